"""Any text in any field: every text field of an issue, the newsletter's title and
the subscriber's name filled with arbitrary Unicode. Either the issue builds and
each message re-parses to the same headers and one recipient, or `check` says
where the problem is; never a crash."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from email.header import decode_header, make_header
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.config import load_settings
from composer.errors import IssueError
from composer.mail.message import clean
from composer.send.prepare import message_template, prepare
from composer.send.recipients import Recipients

pytestmark = pytest.mark.no_database

# What the parsers on the way treat specially: Markdown, Jinja, YAML, HTML, MIME
# headers (encoded words, quoting, folding), bidirectional text and emoji.
SPECIAL = [
    *"*_[]()<>&\"'#{}%|:!`~=?;,.-@$^+\\/ ",
    "{{ x }}",
    "{% if %}",
    "=?utf-8?q?x?=",
    "\u200e",
    "\u200f",
    "\u202b",
    "\u202e",
    "\u2067",
    "\u2069",
    "\u200d",
    "\ufeff",
    "\u0301",
    "\u0650",
    "👩\u200d👩\u200d👧",
    "🇪🇸",
    "ﷺ",
    "שָׁלוֹם",
    "مرحبا",
    "日本語",
    "e\u0301",
    "Ǆ",
    "ß",
    "İ",
    "\u00a0",
    "&amp;",
    "<script>",
    "](javascript:x)",
    "__init__",
    "---",
    "- ",
    "> ",
    "1. ",
    "    ",
]
# Any character but controls (C0, C1, DEL, lone surrogates, line and paragraph
# separators), which the schema refuses with a located error.
PRINTABLE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=3
)
HOSTILE = st.lists(st.one_of(st.sampled_from(SPECIAL), PRINTABLE), min_size=1, max_size=8).map(
    "".join
)
ANYTHING = st.text(max_size=30)
URL = "https://example.org/"


def issue_data(t: Callable[[], str]) -> dict[str, Any]:
    """An issue with every block type and every text field, each from ``t()``."""

    def link() -> dict[str, Any]:
        return {"title": t(), "url": URL + "l", "label": t(), "byline": t(), "note": t()}

    def reply() -> dict[str, Any]:
        return {"status": "responded", "companies": [t()], "text": t()}

    def story() -> dict[str, Any]:
        return {
            "kicker": t(),
            "headline": t(),
            "url": URL + "s",
            "sources": [t()],
            "image": {"src": URL + "i.png", "alt": t()},
            "body": t(),
            "replies": [reply()],
            "see_also": t(),
            "see_also_label": t(),
        }

    return {
        "newsletter": {
            "title": t(),
            "organisation": t(),
            "url": URL,
            "logo": {"src": URL + "logo.png", "alt": t()},
            "footer": {
                "links": [link()],
                "address": t(),
                "reason": t(),
                "unsubscribe_label": t(),
                "view_online_label": t(),
            },
        },
        "date": "2025-04-16",
        "subject": t(),
        "preheader": t(),
        "headline": t(),
        "sections": [
            {"type": "lead", "heading": t(), "story": story()},
            {"type": "links", "heading": t(), "intro": t(), "items": [link()], "outro": t()},
            {
                "type": "focus",
                "heading": t(),
                "topics": [
                    {
                        "heading": t(),
                        "body": t(),
                        "replies": [reply()],
                        "cta": {"text": t(), "button": t(), "url": URL + "c"},
                    }
                ],
            },
            {
                "type": "regions",
                "heading": t(),
                "regions": [
                    {
                        "name": t(),
                        "spotlight_label": t(),
                        "spotlight": story(),
                        "other_news_label": t(),
                        "other_news": [link()],
                        "explore": link(),
                    }
                ],
            },
            {"type": "text", "heading": t(), "body": t()},
        ],
    }


def _mailboxes(value: str) -> list[tuple[str, str]]:
    """The mailboxes of a raw header, names decoded as RFC 2047 says: the white
    space between adjacent encoded-words is dropped. (Python's own address
    parser keeps it as a space inside a display name: CPython's bug, not ours.)"""
    return [
        (str(make_header(decode_header(name))) if "=?" in name else name, addr)
        for name, addr in getaddresses([value.replace("\r\n", "")])
    ]


LOCATED = re.compile(r"^issues/2025-04-16\.yaml:\d+:\d+: ")


def _build_or_locate(home: Path, data: dict[str, Any], name: str) -> bool:
    """Build the issue and a message to ``name``; or every problem is located.
    Whether it built."""
    path = home / "issues" / "2025-04-16.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    settings_ = load_settings()
    try:
        prepared = prepare("issues/2025-04-16.yaml", settings_)
    except IssueError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert LOCATED.match(problem), problem
            assert "\n" not in problem.rstrip()
        return False
    for finding in prepared.findings:
        assert LOCATED.match(str(finding)), finding
    issue = prepared.loaded.issue
    recipient = Recipients(settings_, prepared.slug).subscriber(7, "ana@example.org", name)
    raw = message_template(settings_, prepared).build(recipient)
    assert b"\r\n\r\n" in raw and raw.isascii() or b"8bit" not in raw.split(b"\r\n\r\n")[0]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.defects == [], msg.defects
    assert str(msg["Subject"]) == clean(issue.subject, 250)
    head = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    assert _mailboxes(head["To"]) == [(clean(name, 120), "ana@example.org")]
    assert len(msg.get_all("To") or []) == 1 and msg.get_all("Cc") is None
    assert msg.get_all("Bcc") is None
    assert _mailboxes(head["From"])[0][0] == clean(issue.newsletter.title, 120)
    assert len(msg["From"].addresses) == 1
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    assert "__nlfield" not in html.get_content() and "__nlfield" not in text.get_content()
    return True


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), name=HOSTILE)
def test_hostile_text_in_every_field_builds(
    newsletter_home: Path, data: st.DataObject, name: str
) -> None:
    """Text without control characters is valid anywhere: it must build."""
    one_line = HOSTILE.filter(lambda s: s.strip() and not s.startswith(" "))
    issue = issue_data(lambda: data.draw(one_line))
    assert _build_or_locate(newsletter_home, issue, name)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), name=ANYTHING)
def test_any_text_in_every_field_builds_or_is_located(
    newsletter_home: Path, data: st.DataObject, name: str
) -> None:
    issue = issue_data(lambda: data.draw(ANYTHING))
    _build_or_locate(newsletter_home, issue, name)
