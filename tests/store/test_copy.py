"""`newsletter db migrate-to`: a SQLite newsletter copied into PostgreSQL (Debian's
server on loopback), verified by counts, all or nothing, and working there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer.dburl import DatabaseURL
from composer.store.connection import connect
from tests.helpers import run
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, running

pytestmark = pytest.mark.sqlite_only  # the source is a SQLite file

TABLES = ("lists", "subscribers", "memberships", "sends", "deliveries", "events", "bounces")


def table_counts(target: Path | DatabaseURL) -> dict[str, int]:
    db = connect(target)
    try:
        return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
    finally:
        db.close()


def test_a_newsletter_moves_to_postgresql_whole_and_works_there(
    newsletter_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = add_subscribers(12, lists=("weekly",))
    handler = Handler(faults={addresses[0]: ["550"]})
    with running(handler) as server:
        use(monkeypatch, server.env())
        run("send", "2025-04-16", "--yes")  # one refused: failed
        assert run("subscribers", "unsubscribe", addresses[1]).exit_code == 0
        before = table_counts(newsletter_home / "newsletter.db")
        status_before = run("status", "2025-04-16").stdout

        moved = run("db", "migrate-to", postgres_url)
        assert moved.exit_code == 0, moved.output
        assert "verified, every table has as many rows" in moved.stdout
        assert "pg-test-password" not in moved.output  # the URL is shown without it
        assert table_counts(DatabaseURL(postgres_url)) == before
        assert before["deliveries"] == 12 and before["events"] >= 2

        # The same newsletter, now on PostgreSQL: the same status, nobody mailed twice.
        monkeypatch.setenv("NEWSLETTER_DB", postgres_url)
        assert run("status", "2025-04-16").stdout == status_before
        assert run("send", "2025-04-16", "--yes").exit_code == 0
        assert max(handler.recipients().values()) == 1
        # New rows get new ids (the identity sequences moved past the copied ones).
        assert run("subscribers", "add", "new@example.org", "--list", "weekly").exit_code == 0
        listed = run("subscribers", "list", "--list", "weekly").stdout
        assert "new@example.org" in listed and addresses[2] in listed

        # A second copy over a newsletter is refused: nothing is overwritten.
        monkeypatch.delenv("NEWSLETTER_DB")
        again = run("db", "migrate-to", postgres_url)
        assert again.exit_code == 1
        assert "already holds newsletter data" in again.stderr


def test_bad_targets_are_one_clear_line(newsletter_home: Path, postgres_url: str) -> None:
    add_subscribers(1)
    not_a_url = run("db", "migrate-to", "/tmp/elsewhere.db")
    assert not_a_url.exit_code == 2 and "postgresql://" in not_a_url.stderr
    wrong = postgres_url.replace("pg-test-password", "wrong-password")
    refused = run("db", "migrate-to", wrong)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "password authentication failed" in refused.stderr
    assert "wrong-password" not in refused.output
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_copy_killed_midway_leaves_the_target_empty(
    newsletter_home: Path, postgres_url: str
) -> None:
    rows = "email,name\n" + "".join(f"r{i}@example.org,Reader {i}\n" for i in range(60_000))
    (newsletter_home / "many.csv").write_text(rows)
    assert run("subscribers", "import", "many.csv").exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_DB"}
    copy = subprocess.Popen(
        [sys.executable, "-m", "composer", "db", "migrate-to", postgres_url],
        cwd=newsletter_home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    target = DatabaseURL(postgres_url)
    deadline = time.monotonic() + 60
    while True:  # until the copy is under way (its transaction holds the write lock)
        db = connect(target)
        try:
            locked = db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchone()[0]
        finally:
            db.close()
        if locked or copy.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert copy.poll() is None, "the copy finished before it could be killed"
    time.sleep(0.3)
    copy.send_signal(signal.SIGKILL)
    copy.wait()
    assert table_counts(target)["subscribers"] == 0  # all or nothing: nothing
    done = subprocess.run(
        [sys.executable, "-m", "composer", "db", "migrate-to", postgres_url],
        cwd=newsletter_home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert table_counts(target)["subscribers"] == 60_000
