"""Per-subscriber fields and the placeholder tokens that stand for them.

An issue is rendered once, with a token in place of every per-subscriber
value; sending then splices the values into the prepared bytes. Tokens are
plain ASCII letters and underscores so that Jinja, MRML, premailer/lxml and
quoted-printable all pass them through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from composer.issue.model import RESERVED_PREFIX as _PREFIX

FIELDS = ("name", "email", "unsubscribe_url", "view_url", "preferences_url", "action_url")
TOKEN_RE = re.compile(re.escape(_PREFIX) + "(" + "|".join(FIELDS) + ")__")


def token(field: str) -> str:
    return f"{_PREFIX}{field}__"


@dataclass(frozen=True)
class Placeholders:
    """What templates see as ``subscriber``: every attribute is a token."""

    name: str = token("name")
    email: str = token("email")
    unsubscribe_url: str = token("unsubscribe_url")
    view_url: str = token("view_url")
    preferences_url: str = token("preferences_url")


def split(text: str) -> list[str]:
    """``text`` split at tokens: even items are literal, odd items field names."""
    return TOKEN_RE.split(text)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace every token with its value (already escaped for the context)."""
    return TOKEN_RE.sub(lambda m: values[m.group(1)], text)
