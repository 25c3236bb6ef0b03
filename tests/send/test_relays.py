"""Several relays for one send (SMTP_RELAYS): messages spread by share, a relay
that stops answering or refuses us taken out with its messages going to the
others, nobody skipped and no duplicate beyond the messages in doubt."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import Database, run
from tests.send.test_send import add_subscribers, counts, use
from tests.smtp_server import Handler, free_port, running


def relays_file(home: Path, *relays: dict[str, object]) -> None:
    lines = []
    for relay in relays:
        lines.append("[[relay]]")
        for key, value in relay.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        lines.append("")
    (home / "relays.toml").write_text("\n".join(lines))


def relay(name: str, port: int, **more: object) -> dict[str, object]:
    return {"name": name, "host": "127.0.0.1", "port": port, "security": "none", **more}


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> None:
    use(
        monkeypatch,
        {
            "SMTP_HOST": "127.0.0.1",  # SMTP_RELAYS replaces it for sends
            "SMTP_PORT": "1",
            "SMTP_SECURITY": "none",
            "SMTP_TIMEOUT": "5",
            "SMTP_CONNECT_ATTEMPTS": "1",
            "SMTP_RELAYS": "relays.toml",
            "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        },
    )


def delivered(*handlers: Handler) -> Counter[str]:
    total: Counter[str] = Counter()
    for h in handlers:
        total.update(h.recipients())
    return total


def by_relay(home: Path) -> dict[str, int]:
    db = Database(home)
    try:
        return dict(
            db.execute(
                "SELECT relay, count(*) FROM deliveries WHERE state = 'sent' GROUP BY relay"
            ).fetchall()
        )
    finally:
        db.close()


def test_messages_are_spread_by_share_and_status_counts_per_relay(
    setup: None, newsletter_home: Path
) -> None:
    addresses = add_subscribers(200)
    a, b = Handler(), Handler()
    with running(a) as sa, running(b) as sb:
        relays_file(
            newsletter_home,
            relay("big", sa.port, connections=2, share=3),
            relay("small", sb.port, connections=2, share=1),
        )
        result = run("send", "2025-04-16", "--yes")
        assert result.exit_code == 0, result.output
    assert "SMTP relays big 127.0.0.1" in result.stdout and "(2 connections, 75%)" in result.stdout
    total = delivered(a, b)
    assert sorted(total) == sorted(addresses) and set(total.values()) == {1}
    split = by_relay(newsletter_home)
    assert split == {"big": len(a.received), "small": len(b.received)}
    assert 135 <= split["big"] <= 165, split  # 3:1, within a few messages
    status = run("status", "2025-04-16")
    assert f"  big: sent {split['big']}" in status.stdout
    assert f"  small: sent {split['small']}" in status.stdout


def test_a_relay_that_cannot_be_reached_is_taken_out_from_the_start(
    setup: None, newsletter_home: Path
) -> None:
    addresses = add_subscribers(20)
    a = Handler()
    with running(a) as sa:
        relays_file(newsletter_home, relay("down", free_port()), relay("up", sa.port))
        result = run("send", "2025-04-16", "--yes")
        assert result.exit_code == 0, result.output
    assert "warning: relay down taken out:" in result.stderr
    assert sorted(a.recipients()) == sorted(addresses)
    assert counts(newsletter_home) == {"sent": 20}


def test_a_relay_that_stops_answering_mid_send_loses_nobody(
    setup: None, newsletter_home: Path
) -> None:
    addresses = add_subscribers(120)
    a, b = Handler(delay=0.01), Handler(delay=0.01)
    with running(a) as sa, running(b) as sb:
        relays_file(
            newsletter_home,
            relay("first", sa.port, connections=2),
            relay("second", sb.port, connections=2),
        )

        def stop_second_midway() -> None:
            while len(b.received) < 15:
                time.sleep(0.005)
            sb.controller.stop()

        killer = threading.Thread(target=stop_second_midway)
        killer.start()
        result = run("send", "2025-04-16", "--yes")
        killer.join()
    assert "warning: relay second taken out" in result.stderr, result.output
    final = counts(newsletter_home)
    in_doubt = final.get("in_doubt", 0)
    assert final.get("sent", 0) + in_doubt == 120 and in_doubt <= 2  # second's connections
    total = delivered(a, b)
    db = Database(newsletter_home)
    try:
        doubtful = {
            e
            for (e,) in db.execute(
                "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.state = 'in_doubt'"
            )
        }
    finally:
        db.close()
    for address in addresses:  # everyone delivered, or in doubt; twice only if in doubt
        assert total[address] >= 1 or address in doubtful
        assert total[address] <= 1 or address in doubtful


def test_a_relay_that_refuses_us_on_policy_is_taken_out_with_its_reply_shown(
    setup: None, newsletter_home: Path
) -> None:
    addresses = add_subscribers(40)
    refuses = Handler(mail_reply="554 5.7.1 Service unavailable; client host blocked by policy")
    good = Handler()
    with running(refuses) as sr, running(good) as sg:
        relays_file(newsletter_home, relay("blocked", sr.port), relay("good", sg.port))
        result = run("send", "2025-04-16", "--yes")
        assert result.exit_code == 0, result.output
    assert (
        "warning: relay blocked taken out: it refused us: MAIL FROM: 554 5.7.1 Service"
        in result.stderr
    )
    assert sorted(good.recipients()) == sorted(addresses)
    assert counts(newsletter_home) == {"sent": 40}


def test_when_every_relay_is_gone_the_run_stops_and_resumes_later(
    setup: None, newsletter_home: Path
) -> None:
    add_subscribers(10)
    relays_file(newsletter_home, relay("one", free_port()), relay("two", free_port()))
    result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert "127.0.0.1" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[relay]]\nname = 'a'\n", "relay 1 (a): host is missing"),
        ("[[relay]\n", "not TOML"),
        ("[[relay]]\nname = 'a'\nhost = 'h'\ncolour = 'red'\n", "unknown setting 'colour'"),
        ("[[relay]]\nname = 'a'\nhost = 'h'\npassword = 'x'\n", "unknown setting 'password'"),
        (
            "[[relay]]\nname = 'a'\nhost = 'h'\npassword_env = 'RELAY_A_PASSWORD'\n",
            "RELAY_A_PASSWORD (its password_env) is not set",
        ),
        ("[[relay]]\nname = 'a'\nhost = 'h'\nshare = 0\n", "share must be a positive number"),
        (
            "[[relay]]\nname = 'a'\nhost = 'h'\n[[relay]]\nname = 'a'\nhost = 'g'\n",
            "two relays are named 'a'",
        ),
        ("title = 'x'\n", "no [[relay]] tables"),
    ],
)
def test_a_bad_relays_file_is_one_clear_error_before_anything_is_sent(
    setup: None, newsletter_home: Path, text: str, message: str
) -> None:
    add_subscribers(1)
    (newsletter_home / "relays.toml").write_text(text)
    result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "relays.toml" in result.stderr


def test_a_relays_password_comes_from_a_setting_and_never_prints(
    setup: None, newsletter_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.smtp_server import password_authenticator

    add_subscribers(3)
    monkeypatch.setenv("RELAY_A_PASSWORD", "s3cret-relay")
    handler = Handler()
    with running(
        handler,
        authenticator=password_authenticator("news", "s3cret-relay"),
        auth_require_tls=False,
    ) as server:
        relays_file(
            newsletter_home,
            relay("a", server.port, username="news", password_env="RELAY_A_PASSWORD"),
        )
        result = run("-v", "send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert len(handler.received) == 3
    assert "s3cret-relay" not in result.output and "s3cret-relay" not in result.stderr


def test_a_relay_that_refuses_every_recipient_on_policy_is_taken_out_too(
    setup: None, newsletter_home: Path
) -> None:
    addresses = add_subscribers(40)
    denied = "554 5.7.1 <{}>: Relay access denied"
    refuses = Handler(faults={a: [denied.format(a)] for a in addresses})
    good = Handler()
    with running(refuses) as sr, running(good) as sg:
        relays_file(newsletter_home, relay("denies", sr.port), relay("good", sg.port))
        result = run("send", "2025-04-16", "--yes")
        assert result.exit_code == 0, result.output
    assert "warning: relay denies taken out: it refused us:" in result.stderr
    assert "Relay access denied" in result.stderr
    assert sorted(good.recipients()) == sorted(addresses)  # the refused ones too
    assert counts(newsletter_home) == {"sent": 40}
