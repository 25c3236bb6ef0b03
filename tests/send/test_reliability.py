"""Reliability under adversity: a locked database, a full disk, two paths to one
database, a relay that refuses us on policy, refusals classified by what they mean."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.mail.replies import classify, enhanced_code
from composer.send.lock import SendLock
from composer.store.database import Store
from composer.store.postgres import WRITE_LOCK
from tests.helpers import Database, database_target, mount_tmpfs, run
from tests.send.test_resume import _env, _start_send, _wait_for
from tests.send.test_send import add_subscribers, counts, use
from tests.smtp_server import Handler, free_port, running


@contextlib.contextmanager
def _locked(home: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the database's write lock for a while: SQLite's
    (BEGIN EXCLUSIVE), or on PostgreSQL the lock every writer takes and the
    tables a send writes (as a long migration or a backup restore would)."""
    target = database_target(home)
    if isinstance(target, Path):
        code = (
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2])); db.execute('COMMIT')\n"
        )
        where = str(target)
    else:
        code = (
            "import psycopg, sys, time\n"
            "db = psycopg.connect(sys.argv[1], autocommit=True)\n"
            "db.execute('BEGIN')\n"
            f"db.execute('SELECT pg_advisory_xact_lock({WRITE_LOCK})')\n"
            "db.execute('LOCK TABLE deliveries, subscribers, leases IN EXCLUSIVE MODE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2])); db.execute('COMMIT')\n"
        )
        where = target.url
    proc = subprocess.Popen(
        [sys.executable, "-c", code, where, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_database_locked_too_long_stops_the_send_cleanly(newsletter_home: Path) -> None:
    addresses = add_subscribers(40)
    handler = Handler()
    with running(handler) as server:
        env = {**server.env(), "NEWSLETTER_DB_WAIT": "1"}
        proc = _start_send(newsletter_home, env, "--rate", "40", "--connections", "2")
        _wait_for(handler, 5, proc)
        with _locked(newsletter_home, 6):
            out, err = proc.communicate(timeout=60)  # never a hang
        assert proc.returncode == 1, err
        assert "is locked by another process; waiting up to 1 s" in err
        assert "still locked by another process after 1 s" in err
        assert "resume with: newsletter send 2025-04-16" in err
        assert "Traceback" not in err
        # The lock was released and everything recorded: resume sends the rest once.
        resumed = subprocess.run(
            [sys.executable, "-m", "composer", "send", "2025-04-16", "--yes"],
            cwd=newsletter_home,
            env=_env(newsletter_home, server.env()),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert resumed.returncode == 0, resumed.stderr
    got = handler.recipients()
    assert set(got) == set(addresses) and max(got.values()) == 1


def test_a_database_locked_for_a_while_is_waited_for(newsletter_home: Path) -> None:
    addresses = add_subscribers(20)
    handler = Handler()
    with running(handler) as server:
        proc = _start_send(
            newsletter_home, {**server.env(), "NEWSLETTER_DB_WAIT": "60"}, "--rate", "20"
        )
        _wait_for(handler, 3, proc)
        with _locked(newsletter_home, 7):
            out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "is locked by another process; waiting up to 60 s" in err
    assert sorted(handler.recipients()) == sorted(addresses)
    assert counts(newsletter_home) == {"sent": 20}


def test_a_full_outbox_disk_stops_cleanly_and_resumes(
    newsletter_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = add_subscribers(6)
    outbox = newsletter_home / "outbox"
    mount_tmpfs(outbox, "300k")  # room for two ~100 KB messages
    try:
        full = run("send", "2025-04-16", "--yes", "--connections", "1")
        assert full.exit_code == 1, full.output
        assert "cannot write to the outbox: No space left on device" in full.stderr
        assert "resume with: newsletter send 2025-04-16" in full.stderr
        state = counts(newsletter_home)
        delivered = len(list((outbox / "new").iterdir()))
        assert state.get("sent", 0) == delivered >= 1
        assert state.get("pending", 0) == 6 - delivered and "sending" not in state
        assert list((outbox / "tmp").iterdir()) == []  # no half-written message left
        subprocess.run(["mount", "-o", "remount,size=10m", str(outbox)], check=True)
        resumed = run("send", "2025-04-16", "--yes")
        assert resumed.exit_code == 0, resumed.output
        files = list((outbox / "new").iterdir())
        to = sorted(f.read_text().split("Delivered-To: ", 1)[1].split("\n", 1)[0] for f in files)
        assert to == sorted(addresses)  # everyone once
    finally:
        subprocess.run(["umount", "-l", str(outbox)], check=False)


@pytest.mark.sqlite_only
def test_two_paths_to_one_database_cannot_send_at_once(
    newsletter_home: Path, tmp_path: Path
) -> None:
    add_subscribers(30)
    alias = tmp_path / "alias"
    alias.symlink_to(newsletter_home)
    handler = Handler(delay=0.25)  # one connection: the first send lasts about 8 s
    with running(handler) as server:
        first = _start_send(newsletter_home, server.env(), "--connections", "1")
        _wait_for(handler, 1, first)
        ways = [
            {"NEWSLETTER_DB": str(alias / "newsletter.db")},
            {"NEWSLETTER_DB": os.path.relpath(newsletter_home / "newsletter.db", tmp_path)},
            {"NEWSLETTER_DB": str(newsletter_home / ".." / "home" / "newsletter.db")},
        ]
        for extra in ways:
            second = subprocess.run(
                [sys.executable, "-m", "composer", "send", "2025-04-16", "--yes"],
                cwd=tmp_path,
                env=_env(newsletter_home, {**server.env(), **extra}),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 1, (extra, second.stdout, second.stderr)
            assert "another `newsletter send`" in second.stderr
        assert first.poll() is None  # all three tried while the first was sending
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert max(handler.recipients().values()) == 1 and len(handler.recipients()) == 30


def test_the_lease_inside_the_database_guards_other_machines(newsletter_home: Path) -> None:
    db = database_target(newsletter_home)
    add_subscribers(1)
    with Store(db) as store:  # a send on another host holds the lease
        assert (
            store.take_lease("send", "elsewhere:77:1", "elsewhere", 77, 60, lambda lease: False)
            is None
        )
    refused = run("send", "2025-04-16", "--yes")
    assert refused.exit_code == 1 and "(pid 77 on elsewhere, since " in refused.stderr
    assert SendLock(db).held()
    with Database(newsletter_home) as raw:  # it stopped renewing: the lease expires
        raw.execute("UPDATE leases SET expires = 0")
    assert not SendLock(db).held()
    assert run("send", "2025-04-16", "--yes").exit_code == 0
    # A lease of a process on this host that is gone is taken over at once.
    with Store(db) as store:
        store.take_lease(
            "send",
            f"{socket.gethostname()}:999999:1",
            socket.gethostname(),
            999999,
            60,
            lambda lease: False,
        )
    assert not SendLock(db).held()
    assert run("send", "2025-04-16", "--yes").exit_code == 0


def test_a_relay_that_refuses_on_policy_bounces_nobody(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    addresses = add_subscribers(40)
    refusal = "554 5.7.1 <{}>: Relay access denied"
    handler = Handler(faults={a: [refusal.format(a)] for a in addresses})
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
        assert result.exit_code == 1
        assert (
            "stopped: the relay refuses to send for us: fix SMTP credentials or the From "
            "domain" in result.stderr
        )
        assert "Relay access denied" in result.stderr
        assert run("subscribers", "count").stdout.splitlines()[0].split() == ["active", "40"]
        assert counts(newsletter_home) == {"pending": 40}  # all sent on resume
        handler.faults.clear()  # the relay's configuration is fixed
        resumed = run("send", "2025-04-16", "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(handler.recipients()) == sorted(addresses)


def test_unknown_users_bounce_and_policy_refusals_do_not(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(6)
    handler = Handler(
        faults={
            a[0]: ["550 5.1.1 <x>: Recipient address rejected: User unknown"],
            a[1]: ["550 Requested action not taken: mailbox unavailable, user unknown"],
            a[2]: ["550 5.7.1 Message rejected due to local policy"],
            a[3]: ["552 5.2.2 Mailbox full"],
            a[4]: ["550 rejected"],
        }
    )
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    bounced = run("subscribers", "list", "--status", "bounced").stdout
    assert sorted(line.split("\t")[0] for line in bounced.splitlines()) == [a[0], a[1]]
    assert counts(newsletter_home) == {"failed": 5, "sent": 1}


@pytest.mark.parametrize("where", ["mail", "data"])
def test_refusals_of_our_sender_or_content_stop_the_run_and_resume(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, where: str
) -> None:
    addresses = add_subscribers(5)
    reply = "550 5.7.1 Sender address rejected: not owned by user"
    handler = Handler(**{f"{where}_reply": reply})  # type: ignore[arg-type]
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
        assert result.exit_code == 1
        assert "the relay refuses to send for us" in result.stderr and reply in result.stderr
        assert counts(newsletter_home) == {"pending": 5}
        assert "active" in run("subscribers", "count").stdout.splitlines()[0]
        handler.mail_reply = handler.data_reply = None
        assert run("send", "2025-04-16", "--yes").exit_code == 0
    assert sorted(handler.recipients()) == sorted(addresses)


def test_a_refused_first_connection_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    addresses = add_subscribers(2)
    handler = Handler()
    port = free_port()
    use(
        monkeypatch,
        {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_SECURITY": "none",
            "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        },
    )
    from tests.smtp_server import Server

    server = Server(handler)
    server.port = port
    from aiosmtpd.controller import Controller

    server.controller = Controller(handler, hostname="127.0.0.1", port=port)
    import threading

    starter = threading.Timer(0.6, server.controller.start)
    starter.start()
    try:
        result = run("send", "2025-04-16", "--yes")
    finally:
        starter.join()
        server.controller.stop()
    assert result.exit_code == 0, result.output
    assert "Connection refused; trying again in 1 s" in result.stderr
    assert sorted(handler.recipients()) == sorted(addresses)


REPLIES = [
    (550, "5.1.1 <a@b.org>: Recipient address rejected: User unknown in virtual table", "address"),
    (550, "5.1.2 Host unknown (Name server: no.such: host not found)", "address"),
    (550, "Requested action not taken: mailbox unavailable (user unknown)", "address"),
    (550, "No such user here", "address"),
    (554, "5.7.1 <a@b.org>: Relay access denied", "policy"),
    (550, "<a@b.org>: Recipient address rejected: Relay access denied", "policy"),
    (550, "5.7.26 Unauthenticated email from b.org is not accepted due to DMARC", "policy"),
    (550, "5.1.8 Sender address rejected: Domain not found", "policy"),
    (554, "5.3.4 Message too big for system", "policy"),
    (550, "Message rejected as spam", "policy"),
    (552, "5.2.2 Mailbox full", "mailbox"),
    (550, "rejected", "other"),
]


@pytest.mark.parametrize(("code", "text", "kind"), REPLIES)
def test_refusals_are_classified_by_what_they_say(code: int, text: str, kind: str) -> None:
    assert classify(code, f"{code} {text}") == kind


def test_enhanced_codes_are_found_in_the_text() -> None:
    assert enhanced_code("550 5.1.1 <a@b.org>: nope") == "5.1.1"
    assert enhanced_code("550 user unknown (192.168.0.1)") is None
