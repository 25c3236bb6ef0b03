"""Nothing goes to a real relay with settings that would break every message:
each refusal is one line naming the setting, exit 1, nothing sent (test copies
included); `--dry-run` never sends, `--test` or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, running

GOOD = {
    "NEWSLETTER_BASE_URL": "https://news.weekly-update.net",
    "NEWSLETTER_FROM": "news@weekly-update.net",
    "NEWSLETTER_ALLOW_TEST_SETUP": "",
}


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"NEWSLETTER_BASE_URL": "http://news.weekly-update.net"},
            "NEWSLETTER_BASE_URL=http://news.weekly-update.net is not https",
        ),
        (
            {"NEWSLETTER_BASE_URL": "https://127.0.0.1:8000"},
            "NEWSLETTER_BASE_URL=https://127.0.0.1:8000 points at this machine",
        ),
        ({"NEWSLETTER_BASE_URL": ""}, "NEWSLETTER_BASE_URL=http://127.0.0.1:8000 is not https"),
        (
            {"NEWSLETTER_FROM": ""},
            "NEWSLETTER_FROM=newsletter@example.org is not a real sender",
        ),
        (
            {"NEWSLETTER_FROM": "Weekly <news@newsroom.test>"},
            "(newsroom.test is reserved)",
        ),
        (
            {"NEWSLETTER_UNSUBSCRIBE_MAILTO": "leave@example.com"},
            "the List-Unsubscribe mailto address leave@example.com is at a reserved domain",
        ),
        (
            {"NEWSLETTER_UNSUBSCRIBE_MAILTO": "not an address"},
            "NEWSLETTER_UNSUBSCRIBE_MAILTO: 'not an address' is not a valid email address",
        ),
        (
            {"DKIM_SELECTOR": "s1", "DKIM_PRIVATE_KEY": "k.pem", "DKIM_DOMAIN": "other.net"},
            "DKIM_DOMAIN=other.net is not aligned with the From domain weekly-update.net",
        ),
    ],
)
@pytest.mark.parametrize("test_copy", [False, True])
def test_a_send_with_broken_settings_is_refused_and_nothing_goes_out(
    monkeypatch: pytest.MonkeyPatch,
    newsletter_home: Path,
    settings: dict[str, str],
    says: str,
    test_copy: bool,
) -> None:
    add_subscribers(2)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, {**server.env(), **GOOD, **settings})
        args = ["--test", "editor@weekly-update.net"] if test_copy else ["--yes"]
        result = run("send", "2025-04-16", *args)
    assert result.exit_code == 1, result.output
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert handler.received == []
    assert not (newsletter_home / "dkim").exists()


def test_good_settings_send(monkeypatch: pytest.MonkeyPatch, newsletter_home: Path) -> None:
    add_subscribers(2)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, {**server.env(), **GOOD})
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert len(handler.received) == 2
    message = handler.received[0].message()
    assert message["From"] == "Weekly Update <news@weekly-update.net>"
    assert str(message["List-Unsubscribe"]).startswith("<https://news.weekly-update.net/")


def test_dry_run_never_sends_even_a_test_copy(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(2)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        copy = run("send", "2025-04-16", "--dry-run", "--test", "editor@example.org")
        bulk = run("send", "2025-04-16", "--dry-run")
    assert copy.exit_code == 0, copy.output
    assert "dry run: built the test copy to editor@example.org" in copy.stdout
    assert "not sent" in copy.stdout
    assert bulk.exit_code == 0 and "nothing sent" in bulk.stdout
    assert handler.received == []


def test_the_local_outbox_needs_none_of_it(newsletter_home: Path) -> None:
    """Without SMTP_HOST nothing leaves the machine: a fresh install just works."""
    add_subscribers(1)
    result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert len(list((newsletter_home / "outbox" / "new").iterdir())) == 1
