"""8BITMIME (RFC 6152): 8bit bodies where the relay offers it, smaller and showing
the same; quoted-printable (7bit) where it does not, or when turned off. The test
server refuses 8-bit bytes without BODY=8BITMIME and lines over 998 octets."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.helpers import Database, run
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, Received, running


def _parts(received: Received) -> dict[str, tuple[str, str]]:
    """content type -> (transfer encoding, decoded text)."""
    message = email.message_from_bytes(received.content, policy=email.policy.SMTP)
    out = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            out[part.get_content_type()] = (
                str(part["Content-Transfer-Encoding"]),
                str(part.get_content()),
            )
    return out


def _send(monkeypatch: pytest.MonkeyPatch, handler: Handler, **env: str) -> Received:
    with running(handler) as server:
        use(monkeypatch, {**server.env(), **env})
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert len(handler.received) == 1
    return handler.received[0]


def test_8bit_where_offered_qp_where_not_and_they_show_the_same(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(1)
    eight = _send(monkeypatch, Handler(eight_bit=True))
    with Database(newsletter_home) as db:  # the same issue to the same reader again
        db.execute("DELETE FROM deliveries")
    seven = _send(monkeypatch, Handler(eight_bit=False))
    assert "BODY=8BITMIME" in eight.mail_options and seven.mail_options == []
    assert max(seven.content) < 128  # 7bit: ASCII only
    assert max(eight.content) >= 128  # the seed issue has non-ASCII text, sent as is
    a, b = _parts(eight), _parts(seven)
    assert {k: v[0] for k, v in a.items()} == {"text/plain": "8bit", "text/html": "8bit"}
    assert {k: v[0] for k, v in b.items()} == {
        "text/plain": "quoted-printable",
        "text/html": "quoted-printable",
    }
    # The same text; the HTML the same but for the spaces that became line breaks.
    assert a["text/plain"][1] == b["text/plain"][1]
    assert a["text/html"][1].split() == b["text/html"][1].split()
    assert len(eight.content) < 0.95 * len(seven.content)
    assert max(map(len, eight.content.split(b"\r\n"))) <= 998


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, newsletter_home: Path) -> None:
    add_subscribers(1)
    received = _send(monkeypatch, Handler(eight_bit=True), SMTP_8BITMIME="off")
    assert received.mail_options == []
    assert {v[0] for v in _parts(received).values()} == {"quoted-printable"}


def test_test_copies_follow_the_relay_too(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    for offered, expected in ((True, "8bit"), (False, "quoted-printable")):
        handler = Handler(eight_bit=offered)
        with running(handler) as server:
            use(monkeypatch, server.env())
            result = run("send", "2025-04-16", "--test", "editor@example.org")
        assert result.exit_code == 0, result.output
        assert {v[0] for v in _parts(handler.received[0]).values()} == {expected}
