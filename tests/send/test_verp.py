"""VERP: each message's envelope sender names its subscriber and issue, signed,
so that a bounce says whose it is without parsing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.audience.tokens import verify_verp, verp_address, verp_token
from tests.helpers import pairs, run
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, running

KEY = "test-secret-key"


def _ids(home: Path) -> dict[str, int]:
    return pairs(home, "SELECT email, id FROM subscribers")


@pytest.mark.parametrize("pipelining", [True, False])
def test_each_message_has_its_own_signed_envelope_sender(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, pipelining: bool
) -> None:
    addresses = add_subscribers(9)
    handler = Handler(pipelining=pipelining)
    with running(handler) as server:
        use(monkeypatch, {**server.env(), "NEWSLETTER_BOUNCE_ADDRESS": "Bounces@News.Example.org"})
        result = run("send", "2025-04-16", "--yes", "--connections", "2")
        test_copy = run("send", "2025-04-16", "--test", "ed@example.org")
    assert result.exit_code == 0, result.output
    ids = _ids(newsletter_home)
    senders = {}
    for received in handler.received[:-1]:
        (rcpt,) = received.rcpt_tos
        senders[rcpt] = received.mail_from
        assert received.mail_from.startswith("bounces+") and received.mail_from.endswith(
            "@news.example.org"
        )
        claim = verify_verp(KEY, received.mail_from)
        assert claim is not None and (claim.subscriber_id, claim.issue) == (ids[rcpt], "2025-04-16")
        assert len(received.mail_from.split("@")[0]) <= 64  # a local part's limit
        # The From header stays the newsletter's.
        assert received.message()["From"].addresses[0].addr_spec == "newsletter@example.org"
    assert set(senders) == set(addresses) and len(set(senders.values())) == len(addresses)
    assert test_copy.exit_code == 0
    assert handler.received[-1].mail_from == "bounces@news.example.org"  # no subscriber


def test_a_forged_or_foreign_address_names_nobody() -> None:
    token = verp_token(KEY, 42, "2025-04-16")
    good = verp_address("bounces@news.example.org", token)
    assert (
        verify_verp(KEY, good)
        == verify_verp(KEY, good.upper())
        == verify_verp(
            [
                "new-key",
                KEY,
            ],
            f"<{good}>",
        )
    )
    claim = verify_verp(KEY, good)
    assert claim is not None and claim.subscriber_id == 42
    for bad in (
        verp_address("bounces@news.example.org", verp_token("other-key", 42, "2025-04-16")),
        good.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b")),
        good.replace(token, token[:10]),
        "bounces@news.example.org",
        "ana@example.org",
        "bounces+!!!@news.example.org",
        "bounces+" + "a" * 200 + "@news.example.org",
    ):
        assert verify_verp(KEY, bad) is None, bad


def test_without_a_bounce_address_the_sender_is_the_from_address(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(2)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        assert run("send", "2025-04-16", "--yes").exit_code == 0
    assert {r.mail_from for r in handler.received} == {"newsletter@example.org"}


@pytest.mark.parametrize(
    "value", ["bounces+x@example.org", "not an address", "bounces@localhost", "a@b@c.org"]
)
def test_a_bad_bounce_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, value: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_BOUNCE_ADDRESS", value)
    result = run("send", "2025-04-16", "--dry-run")
    assert result.exit_code == 1
    assert "NEWSLETTER_BOUNCE_ADDRESS=" in result.stderr and "Traceback" not in result.stderr
