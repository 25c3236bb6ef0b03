"""Per-subscriber MIME messages: correct headers, exact bodies, no injection."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.headerregistry import Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.errors import SubscriberError
from composer.issue.load import load_issue
from composer.mail.message import MessageTemplate, Recipient, header_text, mailbox, personalise
from composer.render.pipeline import render_issue
from tests.conftest import SEED_ISSUE

pytestmark = pytest.mark.no_database

RENDERED = render_issue(load_issue(SEED_ISSUE))
TEMPLATE = MessageTemplate(
    RENDERED,
    from_address="Weekly Update <news@example.org>",
    list_id="weekly-update.example.org",
    domain="example.org",
)


def recipient(name: str = "Ana", email_addr: str = "ana@example.org", key: str = "7") -> Recipient:
    return Recipient(
        key=key,
        email=email_addr,
        name=name,
        unsubscribe_url="https://news.example.org/unsubscribe/abc.def",
        unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe%20abc.def",
        view_url="https://news.example.org/issues/2025-04-16/",
    )


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_headers_of_a_message() -> None:
    msg = parse(TEMPLATE.build(recipient("Ana Müller")))
    assert msg["From"] == "Weekly Update <news@example.org>"
    assert msg["To"] == "Ana Müller <ana@example.org>"
    assert msg["Subject"] == RENDERED.subject
    assert msg["List-Id"] == "Weekly Update <weekly-update.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/abc.def>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe%20abc.def>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0" and msg["Date"]
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert len(msg.get_all("List-Unsubscribe") or []) == 1


def test_message_id_is_stable_per_issue_and_subscriber() -> None:
    a = parse(TEMPLATE.build(recipient(key="7")))["Message-ID"]
    again = parse(TEMPLATE.build(recipient(key="7")))["Message-ID"]
    other = parse(TEMPLATE.build(recipient(key="8")))["Message-ID"]
    assert a == again != other
    assert a.startswith("<2025-04-16.") and a.endswith("@example.org>")


def test_non_ascii_subject_is_encoded() -> None:
    tpl = MessageTemplate(
        RENDERED,
        from_address="Actualización <n@example.org>",
        list_id="l.example.org",
        domain="example.org",
        subject_prefix="[TEST] ",
    )
    raw = tpl.build(recipient())
    assert raw.split(b"\r\n\r\n")[0].isascii()
    msg = parse(raw)
    assert msg["Subject"] == "[TEST] " + RENDERED.subject
    assert msg["From"] == "Actualización <n@example.org>"


@pytest.mark.parametrize(
    "name",
    [
        "Evil\r\nBcc: victim@example.com",
        "Evil\nBcc: v@example.com",
        "Evil\rX-Hdr: 1",
        "a\x00b\x0bc\x0cd",
        "Ann \u2028Bcc: x@y",
        'Quote " and \\ back',
        "<script>x</script>",
    ],
)
def test_names_cannot_inject_headers(name: str) -> None:
    raw = TEMPLATE.build(recipient(name))
    head = raw.split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head and b"\nX-Hdr" not in head and b"\x00" not in raw
    assert all(not line or line[:1] in b" \t" or b":" in line for line in head.split(b"\r\n"))
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Hdr"] is None
    assert msg["To"].addresses[0].addr_spec == "ana@example.org"


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.org\r\nBcc: v@example.com",
        "ana@example.org>",
        "a b@example.org",
        "<ana@example.org>",
        "ana@exa\nmple.org",
        "",
        "ana",
        "ana@@example.org",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(SubscriberError):
        TEMPLATE.build(recipient(email_addr=address))


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=150))
def test_any_name_round_trips_without_new_headers(name: str) -> None:
    raw = TEMPLATE.build(recipient(name))
    msg = parse(raw)
    keys = [k.lower() for k in msg]
    assert sorted(keys) == sorted(
        [
            "from",
            "subject",
            "date",
            "list-id",
            "content-language",
            "list-unsubscribe-post",
            "mime-version",
            "content-type",
            "to",
            "message-id",
            "list-unsubscribe",
        ]
    )
    to = msg["To"].addresses[0]
    assert to.addr_spec == "ana@example.org"
    expected_html, expected_text = personalise(RENDERED, recipient(name))
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    assert html.get_content().replace("\r\n", "\n") == expected_html
    assert text.get_content().replace("\r\n", "\n") == expected_text
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_mailbox_quoting_matches_the_stdlib() -> None:
    for name in ["Ana", "Ana B. Smith", "O'Brien, Pat", "Zoë"]:
        ours = parse(f"To: {mailbox(name, 'a@example.org')}\r\n\r\n".encode())["To"]
        assert ours.addresses[0] == Address(display_name=name, addr_spec="a@example.org")


def test_a_subject_with_control_characters_is_refused(tmp_path: Path) -> None:
    from composer.errors import IssueError
    from composer.issue.load import parse_issue

    lines = SEED_ISSUE.read_bytes().split(b"\n")
    source = b"\n".join(
        b'subject: "Clearview\\r\\nBcc: spy@example.net AI"'
        if line.startswith(b"subject:")
        else line
        for line in lines
    )
    with pytest.raises(IssueError) as info:
        parse_issue(source, tmp_path / "2025-04-16.yaml")
    assert info.value.problems[0].endswith(
        "2025-04-16.yaml:27:10: subject: contains the control character U+000D; "
        "remove it (got 'Clearview\\r\\nBcc: spy@example.net AI')"
    )


@pytest.mark.parametrize("text", ["Clearview\r\nBcc: spy@example.net", "a\x00b", "x\u2028y"])
def test_header_text_never_breaks_a_line(text: str) -> None:
    from composer.mail.message import header_text

    out = header_text(text)
    assert "\r" not in out and "\n" not in out and "\x00" not in out and "\u2028" not in out


def test_the_from_name_defaults_to_the_newsletters_title_and_reply_to_is_set() -> None:
    newsletter = RENDERED.issue.newsletter.model_copy(
        update={"title": "Der Wochenbericht", "reply_to": "Redaktion@Example.org"}
    )
    renamed = RENDERED.issue.model_copy(update={"newsletter": newsletter})
    template = MessageTemplate(
        dataclasses.replace(RENDERED, issue=renamed),
        from_address="news@example.org",
        list_id="x.example.org",
        domain="example.org",
    )
    msg = parse(template.build(recipient()))
    assert msg["From"] == "Der Wochenbericht <news@example.org>"
    assert msg["Reply-To"] == "redaktion@example.org"
    # A name in NEWSLETTER_FROM wins; no reply_to, no Reply-To.
    assert TEMPLATE.build(recipient()).count(b"Reply-To") == 0


@pytest.mark.parametrize("text", ["=?utf-8?q?PayPal?=", "Hi =?utf-8?b?QmFuaw==?= there"])
def test_text_that_looks_encoded_is_not_decoded_by_readers(text: str) -> None:
    msg = parse(TEMPLATE.build(recipient(text)))
    assert msg["To"].addresses[0].display_name == text
    subject = parse(f"Subject: {header_text(text)}\r\n\r\n".encode())["Subject"]
    assert str(subject) == text
