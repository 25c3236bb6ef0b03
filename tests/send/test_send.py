"""`newsletter send` against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from composer.send.lock import SendLock
from composer.send.rate import RateLimiter
from tests.helpers import Database, database_target, database_text, pairs, run, write_issue
from tests.smtp_server import (
    Handler,
    Server,
    password_authenticator,
    running,
    silent_server,
    tls_context,
    write_ca,
)


def add_subscribers(n: int, prefix: str = "reader", lists: tuple[str, ...] = ()) -> list[str]:
    addresses = [f"{prefix}{i:03d}@example.org" for i in range(n)]
    for i, address in enumerate(addresses):
        args = ["subscribers", "add", address, "--name", f"Reader {i}"]
        for name in lists:
            args += ["--list", name]
        assert run(*args).exit_code == 0
    return addresses


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def counts(home: Path) -> dict[str, int]:
    return pairs(home, "SELECT state, count(*) FROM deliveries GROUP BY state")


@pytest.mark.parametrize("pipelining", [True, False])
def test_send_to_every_active_subscriber_once(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, pipelining: bool
) -> None:
    addresses = add_subscribers(12)
    run("subscribers", "unsubscribe", addresses[0])
    handler = Handler(pipelining=pipelining)
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--connections", "3", input="y\n")
        assert result.exit_code == 0, result.output
        again = run("send", "2025-04-16", "--yes")
    assert "Audience:   11 subscriber(s)" in result.stdout
    assert "Transport:  SMTP 127.0.0.1:" in result.stdout
    assert "Send to 11 subscriber(s) now?" in result.stdout
    assert "this run: 11 sent, 0 failed, 0 deferred, 0 in doubt" in result.stdout
    assert handler.recipients() == {a: 1 for a in addresses[1:]}
    assert "nothing to send: every active subscriber has this issue" in again.stdout
    msg = next(m for m in handler.received if m.rcpt_tos == [addresses[5]]).message()
    assert msg["To"] == f"Reader 5 <{addresses[5]}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@example.org?subject=unsubscribe%20")
    html = msg.get_body(("html",))
    assert html is not None and https in html.get_content()
    assert counts(newsletter_home) == {"sent": 11}


def test_asks_before_sending_and_can_be_declined(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(2)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", input="n\n")
    assert result.exit_code == 1 and "not sent" in result.stderr
    assert handler.received == [] and counts(newsletter_home) == {}


@contextlib.contextmanager
def auth_server(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    handler: Handler,
    server_password: str,
    our_password: str,
) -> Iterator[Server]:
    """STARTTLS with a trusted test CA, AUTH required; our settings point at it."""
    ca = trustme.CA()
    with running(
        handler,
        tls_context=tls_context(ca.issue_cert("127.0.0.1")),
        require_starttls=True,
        auth_required=True,
        authenticator=password_authenticator("editor", server_password, handler),
    ) as server:
        use(
            monkeypatch,
            {
                **server.env("starttls"),
                "SMTP_CA_FILE": str(write_ca(ca, tmp_path)),
                "SMTP_USERNAME": "editor",
                "SMTP_PASSWORD": our_password,
            },
        )
        yield server


def test_starttls_with_a_verified_certificate_and_auth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_subscribers(3)
    handler = Handler()
    with auth_server(monkeypatch, tmp_path, handler, "s3cret", "s3cret"):
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert "(starttls)" in result.stdout
    assert len(handler.recipients()) == 3


def test_many_messages_over_tls_on_every_connection(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, tmp_path: Path
) -> None:
    """The engine's non-blocking TLS path (partial writes, records already
    decrypted and waiting): 60 messages of 99 KB over 4 STARTTLS connections."""
    addresses = add_subscribers(60)
    handler = Handler()
    with auth_server(monkeypatch, tmp_path, handler, "s3cret", "s3cret"):
        result = run("send", "2025-04-16", "--yes", "--connections", "4")
    assert result.exit_code == 0, result.output
    assert handler.recipients() == {a: 1 for a in addresses}
    assert counts(newsletter_home) == {"sent": 60}
    sizes = {len(m.content) for m in handler.received}
    assert min(sizes) > 90_000  # whole messages, not cut anywhere
    for m in handler.received:
        assert m.content.rstrip().endswith(b"--")  # the closing MIME boundary


def test_a_wrong_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, tmp_path: Path
) -> None:
    add_subscribers(2)
    ca = trustme.CA()
    handler = Handler()
    with running(
        handler, tls_context=tls_context(ca.issue_cert("mail.other.example")), require_starttls=True
    ) as server:
        use(monkeypatch, {**server.env("starttls"), "SMTP_CA_FILE": str(write_ca(ca, tmp_path))})
        wrong_name = run("send", "2025-04-16", "--yes")
        monkeypatch.delenv("SMTP_CA_FILE")
        unknown_ca = run("send", "2025-04-16", "--yes")
    for result in (wrong_name, unknown_ca):
        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"Error: 127.0.0.1:{server.port}: the server's certificate is not trusted ("
        )
        assert "Traceback" not in result.output
    assert "IP address mismatch" in wrong_name.stderr
    assert handler.received == []
    assert counts(newsletter_home) == {}  # refused before anything was written


def test_starttls_is_never_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    add_subscribers(1)
    handler = Handler()
    with running(handler) as server:  # no STARTTLS offered
        use(monkeypatch, server.env("starttls"))
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert "does not offer STARTTLS; refusing to send in plain text" in result.stderr
    assert handler.received == []


def test_implicit_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    add_subscribers(2)
    ca = trustme.CA()
    handler = Handler()
    with running(
        handler, ssl_context=tls_context(ca.issue_cert("127.0.0.1")), server_hostname="127.0.0.1"
    ) as server:
        use(monkeypatch, {**server.env("ssl"), "SMTP_CA_FILE": str(write_ca(ca, tmp_path))})
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert "(ssl)" in result.stdout
    assert len(handler.recipients()) == 2


def test_faults_per_recipient(monkeypatch: pytest.MonkeyPatch, newsletter_home: Path) -> None:
    a = add_subscribers(8)
    handler = Handler(
        faults={
            a[1]: ["450", "ok"],  # greylisted once: retried in the same run
            a[2]: ["550"],  # unknown user: failed and bounced
            a[3]: ["421", "ok"],  # service closing: reconnect, send again
            a[4]: ["drop_before_data", "ok"],  # connection lost before DATA: send again
            a[5]: ["drop_after_data", "ok"],  # lost after DATA: in doubt, not resent
            a[6]: ["450"],  # always 4xx: gives up after the attempts allowed
        }
    )
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "2", "--retry-delay", "0.01")
        assert result.exit_code == 3, result.output  # finished, with a message in doubt
        status = run("status", "2025-04-16")
        second = run("send", "2025-04-16", "--yes")
    got = handler.recipients()
    assert got == {a[0]: 1, a[1]: 1, a[3]: 1, a[4]: 1, a[5]: 1, a[7]: 1}
    assert handler.attempts[a[6]] == 5
    assert counts(newsletter_home) == {"sent": 5, "failed": 2, "in_doubt": 1}
    assert "this run: 5 sent, 2 failed, 5 deferred, 1 in doubt" in result.stdout
    assert f"failed    {a[2]}  550 5.1.1 No such user here  (attempts: 1)" in status.stdout
    assert (
        f"failed    {a[6]}  450 4.2.1 Mailbox busy, try again later (gave up after 5 "
        "attempts)  (attempts: 5)"
    ) in status.stdout
    assert f"in doubt  {a[5]}  connection lost after the end of DATA" in status.stdout
    assert run("subscribers", "list", "--status", "bounced").stdout.startswith(a[2])
    assert (
        "Earlier:    5 sent, 1 in doubt (not resent; --resend-in-doubt to resend)" in second.stdout
    )
    assert handler.recipients()[a[5]] == 1  # the documented policy: not resent by default


def test_in_doubt_messages_are_resent_on_request(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(2)
    handler = Handler(faults={a[1]: ["drop_after_data", "ok"]})
    with running(handler) as server:
        use(monkeypatch, server.env())
        run("send", "2025-04-16", "--yes")
        result = run("send", "2025-04-16", "--yes", "--resend-in-doubt")
    assert "1 in doubt (will be resent)" in result.stdout
    assert handler.recipients() == {a[0]: 1, a[1]: 2}
    assert counts(newsletter_home) == {"sent": 2}


def test_a_server_that_never_answers(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(2)
    with silent_server() as port:
        use(
            monkeypatch,
            {
                "SMTP_HOST": "127.0.0.1",
                "NEWSLETTER_ALLOW_TEST_SETUP": "1",
                "SMTP_PORT": str(port),
                "SMTP_SECURITY": "none",
                "SMTP_TIMEOUT": "0.3",
                "SMTP_CONNECT_ATTEMPTS": "1",
            },
        )
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert result.exit_code == 1
    assert result.stderr == f"Error: 127.0.0.1:{port}: no answer within 0.3 s\n"
    assert counts(newsletter_home) == {}  # nothing written


def test_a_connection_that_keeps_dropping_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(3)
    handler = Handler(faults={a[1]: ["drop_before_data"]})
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
        status = run("status", "2025-04-16")
    assert result.exit_code == 1
    assert (
        f"stopped: SMTP 127.0.0.1:{server.port} (none): giving up after 5 reconnects "
        "(connection lost before DATA" in result.stderr
    )
    assert "resume with: newsletter send 2025-04-16" in result.stderr
    assert handler.recipients() == {a[0]: 1}
    assert handler.attempts[a[1]] == 6
    assert counts(newsletter_home) == {"sent": 1, "pending": 2}
    assert "  not yet sent         2" in status.stdout


def test_auth_failure_stops_and_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch,
    newsletter_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "canary-Pw-7731"
    add_subscribers(3)
    handler = Handler()
    with auth_server(monkeypatch, tmp_path, handler, "right", canary) as server:
        result = run("-v", "send", "2025-04-16", "--yes")
        test_copy = run("-v", "send", "2025-04-16", "--test", "me@example.org")
    assert result.exit_code == 1 and test_copy.exit_code == 1
    assert (
        f"Error: 127.0.0.1:{server.port} refused the login of SMTP_USERNAME='editor' (535 "
        in result.stderr
    )
    assert handler.received == []
    assert handler.auth_attempts == 2  # one AUTH per command: never PLAIN, then LOGIN too
    plain = base64.b64encode(f"\0editor\0{canary}".encode()).decode()
    everything = result.output + test_copy.output + caplog.text + database_text(newsletter_home)
    assert canary not in everything and plain not in everything


def test_many_failures_in_a_row_pause_the_run(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(60)
    handler = Handler(faults={address: ["550"] for address in a})
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert result.exit_code == 1
    assert (
        "stopped: paused after 50 failures in a row (last: 550 5.1.1 No such user here)"
        in result.stderr
    )
    assert counts(newsletter_home) == {"failed": 50, "pending": 10}


def test_a_second_send_on_the_same_database_is_refused(newsletter_home: Path) -> None:
    add_subscribers(1)
    with SendLock(database_target(newsletter_home)):
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert "Error: another `newsletter send` (pid " in result.stderr
    assert "is running on" in result.stderr
    assert counts(newsletter_home) == {}


def test_an_issue_edited_after_sending_started_is_refused(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(3)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        assert run("send", "2025-04-16", "--yes", "--limit", "1").exit_code == 0
        write_issue(
            newsletter_home, "2025-04-16.yaml", [("Privacy groups warn", "Privacy advocates warn")]
        )
        refused = run("send", "2025-04-16", "--yes")
        forced = run("send", "2025-04-16", "--yes", "--force")
    assert refused.exit_code == 1
    assert (
        "Error: issues/2025-04-16.yaml changed after sending it started (1 sent); send the "
        "rest as it is now with --force, or undo the edit"
    ) in refused.stderr
    assert forced.exit_code == 0
    assert sum(handler.recipients().values()) == 3


def test_test_copy_dry_run_limit_and_list(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    add_subscribers(4, prefix="weekly", lists=("weekly",))
    add_subscribers(3, prefix="other")
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        test_copy = run("send", "2025-04-16", "--test", "Editor@Example.org")
        assert test_copy.exit_code == 0, test_copy.output
        assert counts(newsletter_home) == {}
        dry = run("send", "2025-04-16", "--dry-run")
        assert "dry run: built 7 messages" in dry.stdout and counts(newsletter_home) == {}
        limited = run("send", "2025-04-16", "--yes", "--list", "weekly", "--limit", "3")
        unknown = run("send", "2025-04-16", "--yes", "--list", "nosuch")
    assert handler.received[0].rcpt_tos == ["editor@example.org"]
    assert handler.received[0].message()["Subject"].startswith("[TEST] Clearview AI")
    assert "Audience:   3 subscriber(s) on list 'weekly'" in limited.stdout
    assert sorted(handler.recipients()) == [
        "editor@example.org",
        "weekly000@example.org",
        "weekly001@example.org",
        "weekly002@example.org",
    ]
    assert unknown.exit_code == 1 and "no list named 'nosuch'" in unknown.stderr


def test_names_with_control_characters_never_make_a_header_on_the_wire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run("subscribers", "add", "victim@example.org", "--name", "Eve\r\nBcc: spy@example.net")
    run("subscribers", "add", "v2@example.org", "--name", "Eve\nX-Injected: 1\x00\x0b")
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        assert run("send", "2025-04-16", "--yes").exit_code == 0
    assert sorted(handler.recipients()) == ["v2@example.org", "victim@example.org"]
    for received in handler.received:
        head = received.content.split(b"\r\n\r\n", 1)[0]
        assert b"\nBcc:" not in head and b"\nX-Injected:" not in head and b"\x00" not in head
        assert received.message()["Bcc"] is None


def test_the_outbox_is_the_default(newsletter_home: Path) -> None:
    add_subscribers(3)
    result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0
    outbox = newsletter_home / "outbox" / "new"
    assert f"messages are in the local outbox: {outbox}" in result.stdout
    files = sorted(outbox.iterdir())
    assert len(files) == 3
    import email
    import email.policy

    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Delivered-To"].endswith("@example.org") and msg["Subject"].startswith("Clearview")


def test_rate_limiter_spacing() -> None:
    assert RateLimiter(None, None).gap == 0
    assert RateLimiter(4, None).gap == 0.25
    assert RateLimiter(10, 3600).gap == 1.0  # the hourly limit is the tighter one
    assert RateLimiter(None, 7200).gap == 0.5


def test_a_server_that_hangs_after_data_leaves_the_message_in_doubt(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(3)
    handler = Handler(faults={a[1]: ["hang_after_data"]})
    with running(handler) as server:
        use(monkeypatch, {**server.env(), "SMTP_TIMEOUT": "0.5", "SMTP_DATA_TIMEOUT": "0.8"})
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert result.exit_code == 3, result.output  # finished, with a message in doubt
    assert "this run: 2 sent, 0 failed, 0 deferred, 1 in doubt" in result.stdout
    assert counts(newsletter_home) == {"sent": 2, "in_doubt": 1}
    assert set(handler.recipients()) == set(a)


def test_people_who_leave_during_a_send_are_dropped_not_kept_waiting(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(3)
    handler = Handler(faults={a[1]: ["450"]})
    with running(handler) as server:
        use(monkeypatch, server.env())
        first = run("send", "2025-04-16", "--yes", "--max-wait", "0")
        assert "resume with: newsletter send 2025-04-16" in first.stderr  # a[1] is deferred
        run("subscribers", "unsubscribe", a[1])
        again = run("send", "2025-04-16", "--yes")
    assert "nothing to send: every active subscriber has this issue" in again.stdout
    assert again.exit_code == 0 and again.stderr == ""
    assert counts(newsletter_home) == {"sent": 2}


def test_a_bad_address_in_the_database_fails_alone(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(3)
    db = Database(newsletter_home)
    db.execute(
        "UPDATE subscribers SET email = 'broken address@example.org' WHERE email = ?", (a[1],)
    )
    db.commit()
    db.close()
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert result.exit_code == 0, result.output
    assert "this run: 2 sent, 1 failed" in result.stdout
    assert set(handler.recipients()) == {a[0], a[2]}
    assert (
        "'broken address@example.org' is not a valid email address"
        in run("status", "2025-04-16").stdout
    )
