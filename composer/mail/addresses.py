"""The one address policy: what we accept as a subscriber's (or our own) address.

Used at import, when adding a subscriber, for the From address and again for
every message at send time, so that nothing the database holds can reach an
SMTP envelope or a header unless it passes the same rules:

trimmed, Unicode NFC, validated by email-validator without DNS, the domain in
ASCII (IDNA) so that it can go on the wire without SMTPUTF8, and the whole
address lower-cased so that ``Ana@X.org`` and ``ana@x.org`` are one subscriber
(providers treat local parts case-insensitively in practice).

The only module that imports email-validator.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from composer.errors import SubscriberError

_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _validate(text: str) -> str:
    # Imported here: compiling its patterns takes 20 ms, which a command that
    # checks no address (``build``, ``--help``) need not pay.
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{text!r} is not a valid email address: {exc}") from None
    return str(result.ascii_email or result.normalized).lower()


@lru_cache(maxsize=8192)
def _ascii_domain(domain: str) -> str:
    """email-validator's verdict on a domain, kept: lists repeat a few domains
    endlessly, and the domain check (IDNA, UTS-46) is most of its cost."""
    return _validate(f"x@{domain}").partition("@")[2]


def normalise(raw: str) -> str:
    """The address in its one stored and sent form, or ``SubscriberError``."""
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        raise SubscriberError("the email address is empty")
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and _DOT_ATOM.fullmatch(local):
        try:
            return f"{local}@{_ascii_domain(domain.lower())}".lower()
        except SubscriberError:
            pass  # let the full check word the error for the whole address
    return _validate(text)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
