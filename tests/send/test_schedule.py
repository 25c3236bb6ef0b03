"""Scheduled sends: --at waits and then sends, stopped before the time it has
sent and written nothing; --not-after refuses to start late and stops a send
still running at that time (the rest is sent by a later run)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Database, run
from tests.send.test_send import add_subscribers, counts, use
from tests.smtp_server import Handler, running


def _local(seconds: float) -> str:
    """A wall-clock time ``seconds`` from now, as an editor writes it (this machine's zone)."""
    return (dt.datetime.now() + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def _outbox(home: Path) -> list[Path]:
    folder = home / "outbox" / "new"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_at_waits_for_the_time_then_sends(newsletter_home: Path) -> None:
    add_subscribers(3)
    at = _local(2)
    target = dt.datetime.fromisoformat(at).timestamp()
    result = run("send", "2025-04-16", "--yes", "--at", at)
    assert result.exit_code == 0, result.output
    assert "waiting until" in result.stderr
    sent = _outbox(newsletter_home)
    assert len(sent) == 3
    assert all(p.stat().st_mtime >= target for p in sent)  # none before the time


def test_a_scheduled_send_stopped_before_its_time_has_sent_and_written_nothing(
    newsletter_home: Path,
) -> None:
    add_subscribers(3)
    env = {**os.environ, "NEWSLETTER_HOME": str(newsletter_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "composer", "send", "2025-04-16", "--yes", "--at", _local(3600)],
        cwd=newsletter_home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)
    assert proc.poll() is None  # waiting
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err.decode()
    assert "nothing sent" in err.decode() and "Traceback" not in err.decode()
    assert not _outbox(newsletter_home)
    db = Database(newsletter_home)
    try:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM sends").fetchone() == (0,)
    finally:
        db.close()
    # Started again with the time passed: it sends.
    result = run("send", "2025-04-16", "--yes", "--at", _local(-60))
    assert result.exit_code == 0, result.output
    assert len(_outbox(newsletter_home)) == 3


def test_times_are_read_in_the_zone_given(newsletter_home: Path) -> None:
    add_subscribers(1)
    # 09:00 in London on the seed's date is long past: sent at once.
    result = run("send", "2025-04-16", "--yes", "--at", "2025-04-16 09:00", "--tz", "Europe/London")
    assert result.exit_code == 0, result.output
    assert "waiting" not in result.stderr


def test_not_after_refuses_a_late_start(newsletter_home: Path) -> None:
    add_subscribers(2)
    result = run(
        "send", "2025-04-16", "--yes", "--not-after", "2025-04-16 12:00", "--tz", "Europe/London"
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: --not-after 2025-04-16 12:00:00 BST has passed; nothing sent "
        "(give a later --not-after, or none, to send anyway)"
    )
    assert not _outbox(newsletter_home)


def test_not_after_stops_a_send_still_running_and_a_later_run_sends_the_rest(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    addresses = add_subscribers(60)
    handler = Handler(delay=0.05)  # 60 messages over one connection: about 3 s
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run(
            "send", "2025-04-16", "--yes", "--connections", "1", "--not-after", _local(1.2)
        )
        assert result.exit_code == 1, result.output
        assert "the --not-after time passed" in result.stderr
        assert "resume with: newsletter send 2025-04-16" in result.stderr
        first = counts(newsletter_home)
        assert 0 < first.get("sent", 0) < 60 and first.get("in_doubt", 0) == 0
        again = run("send", "2025-04-16", "--yes")
        assert again.exit_code == 0, again.output
    assert counts(newsletter_home) == {"sent": 60}
    assert sorted(handler.recipients()) == sorted(addresses)
    assert set(handler.recipients().values()) == {1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "tomorrow 9am"], "--at 'tomorrow 9am': not a time; write YYYY-MM-DD HH:MM"),
        (["--at", "2099-01-01 09:00", "--tz", "Mars/Olympus"], "--tz 'Mars/Olympus': unknown"),
        (
            ["--at", "2099-01-02 09:00", "--not-after", "2099-01-01 09:00"],
            "is not after --at",
        ),
        (["--at", "2099-01-01 09:00", "--dry-run"], "--at schedules a real send"),
    ],
)
def test_bad_times_are_one_line_errors(
    newsletter_home: Path, args: list[str], message: str
) -> None:
    result = run("send", "2025-04-16", "--yes", *args)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
