"""Several `newsletter send` processes share one send on PostgreSQL: each claims
deliveries (SKIP LOCKED), nobody is mailed twice, and a sender killed with
SIGKILL has its claims taken over by the others; what it had in flight is
reported in doubt. Runs on the PostgreSQL run (NEWSLETTER_TEST_BACKEND=postgresql)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from composer.send.lock import SendLock
from composer.store.database import Store
from tests.conftest import ON_POSTGRES
from tests.helpers import Database, database_target, pairs, run
from tests.send.test_resume import _start_send
from tests.send.test_send import add_subscribers, counts
from tests.smtp_server import Handler, running

pytestmark = pytest.mark.skipif(
    not ON_POSTGRES, reason="several senders share a send on PostgreSQL: the PostgreSQL run"
)


def _populate(home: Path, n: int) -> list[str]:
    rows = "email,name\n" + "".join(f"r{i:04d}@example.org,Reader {i}\n" for i in range(n))
    (home / "readers.csv").write_text(rows)
    assert run("subscribers", "import", "readers.csv").exit_code == 0
    return [f"r{i:04d}@example.org" for i in range(n)]


def _sent_by(output: str) -> int:
    """The messages a sender's summary says it sent ("this run: 80 sent, ...")."""
    found = re.search(r"^this run: ([\d,]+) sent", output, re.M)
    assert found, output
    return int(found.group(1).replace(",", ""))


def _three_senders(home: Path, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    """Three `newsletter send` processes of the seed issue, 2 connections each."""
    return [_start_send(home, env, "--connections", "2") for _ in range(3)]


def test_three_senders_share_one_send_and_mail_everyone_once(newsletter_home: Path) -> None:
    addresses = _populate(newsletter_home, 240)
    handler = Handler(delay=0.01)
    with running(handler) as server:
        senders = _three_senders(newsletter_home, server.env())
        outputs = [p.communicate(timeout=180) for p in senders]
    for p, (_, err) in zip(senders, outputs, strict=True):
        assert p.returncode == 0, err
    got = handler.recipients()
    assert sorted(got) == addresses and max(got.values()) == 1  # everyone, once
    assert counts(newsletter_home) == {"sent": 240}
    shares = [_sent_by(out) for out, _ in outputs]
    assert sum(shares) == 240 and min(shares) > 0, shares  # each did part of it
    claims = pairs(newsletter_home, "SELECT claimed_by, count(*) FROM deliveries GROUP BY 1")
    assert claims == {"": 240}  # no claim left behind


def test_killing_one_of_three_senders_loses_nobody(newsletter_home: Path) -> None:
    addresses = _populate(newsletter_home, 300)
    handler = Handler(delay=0.02)
    with running(handler) as server:
        senders = _three_senders(newsletter_home, server.env())
        deadline = time.monotonic() + 60
        while len(handler.received) < 60:
            assert time.monotonic() < deadline
            assert all(p.poll() is None for p in senders), "a send ended too early"
            time.sleep(0.005)
        victim = senders[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for p in (senders[0], senders[2]):
            out, err = p.communicate(timeout=180)
            assert p.returncode in (0, 3), err  # 3: it says some are in doubt
    got = handler.recipients()
    states = pairs(
        newsletter_home,
        "SELECT s.email, d.state FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id",
    )
    doubtful = {a for a, state in states.items() if state == "in_doubt"}
    duplicates = {a for a, n in got.items() if n > 1}
    lost = [a for a in addresses if a not in got and a not in doubtful]
    assert lost == []  # nobody skipped
    assert len(duplicates) <= 2  # at most the killed sender's open connections
    assert duplicates <= doubtful  # and every one reported in doubt
    assert len(doubtful) <= 2
    assert set(states.values()) <= {"sent", "in_doubt"}
    # What is in doubt is said, and --resend-in-doubt settles it.
    shown = run("status", "2025-04-16").stdout
    assert re.search(rf"^  in doubt\s+{len(doubtful)}$", shown, re.M), shown


def test_a_sender_gone_from_another_machine_is_taken_over_when_its_lease_expires(
    newsletter_home: Path,
) -> None:
    addresses = _populate(newsletter_home, 20)
    target = database_target(newsletter_home)
    assert run("send", "2025-04-16", "--yes", "--limit", "1").exit_code == 0  # to the outbox
    with Store(target) as store:
        store.enqueue("2025-04-16", None, None)
    gone = "elsewhere:77:1:ab12"
    with Database(newsletter_home) as db:  # a sender on another host: claims, one in flight
        db.execute(
            "INSERT INTO leases VALUES (?, ?, 'elsewhere', 77, 'x', ?)",
            (f"sender 2025-04-16 {gone}", gone, time.time() + 60),
        )
        db.execute(
            "UPDATE deliveries SET claimed_by = ? WHERE subscriber_id BETWEEN 2 AND 6", (gone,)
        )
        db.execute("UPDATE deliveries SET state = 'sending' WHERE subscriber_id = 2")
    handler = Handler()
    with running(handler) as server:
        env = server.env()
        first = _start_send(newsletter_home, env, "--connections", "1")
        # The other sender's lease still runs: its five are left to it, the rest sent...
        deadline = time.monotonic() + 60
        while len(handler.received) < 14:
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.01)
        time.sleep(1.0)
        assert len(handler.received) == 14 and first.poll() is None  # ...and it waits
        with Database(newsletter_home) as db:  # the lease runs out (it stopped renewing)
            db.execute("UPDATE leases SET expires = 0 WHERE holder = ?", (gone,))
        out, err = first.communicate(timeout=60)
    assert first.returncode == 3, err  # one message in doubt
    got = handler.recipients()
    assert sorted(got) == addresses[2:] and max(got.values()) == 1
    assert "in flight at a sender that stopped (elsewhere:77:1:ab12) are in doubt" in out + err
    assert counts(newsletter_home) == {"sent": 19, "in_doubt": 1}  # one in the outbox


def test_another_issue_waits_for_the_senders_of_this_one(newsletter_home: Path) -> None:
    add_subscribers(1)
    with SendLock(database_target(newsletter_home), issue="2025-04-09"):
        refused = run("send", "2025-04-16", "--yes")
        assert refused.exit_code == 1
        assert ", sending 2025-04-09)" in refused.stderr
        # A sender of the same issue joins instead (it would share the send).
        with SendLock(database_target(newsletter_home), issue="2025-04-09") as joined:
            assert joined.shared
    assert run("send", "2025-04-16", "--yes").exit_code == 0


def test_claims_look_past_their_last_but_take_back_what_was_given_back(
    newsletter_home: Path,
) -> None:
    _populate(newsletter_home, 30)
    with Store(database_target(newsletter_home)) as store:
        store.start_send("i", "digest", "subject")
        store.enqueue("i", None, None)
        ids = [r[0] for r in store.query("SELECT id FROM subscribers ORDER BY id")]

        def claim(holder: str, limit: int, after: int) -> list[int]:
            return [d.subscriber_id for d in store.claim("i", holder, time.time(), limit, after)]

        assert claim("a", 10, 0) == ids[:10]
        assert claim("b", 10, ids[9]) == ids[10:20]
        store.release_claims("i", "a")  # a stopped: its ten go back to everyone
        # b looks past its last claim first; only once nothing is left there does
        # it go back for the rows before it.
        assert claim("b", 5, ids[19]) == ids[20:25]
        assert claim("b", 10, ids[24]) == ids[:5] + ids[25:30]
        # A deferred row before the hint, once due, is claimed too.
        with store.transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = 'deferred', next_attempt_at = 0, claimed_by = '' "
                "WHERE issue = 'i' AND subscriber_id = ?",
                (ids[12],),
            )
        assert claim("c", 3, ids[29]) == [*ids[5:7], ids[12]]
        assert claim("c", 10, ids[29]) == ids[7:10]
