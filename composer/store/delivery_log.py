"""The delivery log's write path during a send: commits in groups.

The engine drives every connection of a send from one thread. Whenever some
of them reach the point of delivery, it records them all in one transaction:
with 4 connections one fsync (``synchronous=FULL``) covers up to 4 messages,
and nothing contends for SQLite's write lock (the first release's threads did:
the busy handler's sleeps of 1.5-2 ms were its main cost per message).

On SQLite the engine writes and commits a group itself (``commit(here=True)``):
the connections are in step, so nothing else waits meanwhile. On PostgreSQL,
near the relay, it hands the group to a helper thread (``start``), which writes
it in one statement (a round trip) and says when it is done through a pipe the
engine polls with its sockets (``fd``, ``finish``); so the connections whose
messages are not in that group go on reading replies and writing bodies, and
the records that arrive meanwhile make the next group. The log's transactions
there take no turn among the writers (row locks suffice), so several senders
commit side by side. (``start`` on SQLite writes the records at once and hands
only the COMMIT, the fsync, to the helper.)

A record holds the outcome of a connection's previous message and marks its
next one 'sending'. The engine makes it just before it writes a message's
final ``.`` (or renames it into the outbox), so a crash leaves at most one row
per connection in 'sending' (then reported in doubt), and only for a message
whose end may have reached the server.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence

from composer.errors import StoreError
from composer.store.connection import (
    DEFAULT_WAIT,
    Target,
    connect,
    dialect,
    with_wait,
)
from composer.store.database import now_iso
from composer.store.postgres import PgConnection

# (subscriber id, state, server reply, attempts, next attempt at, new subscriber status)
Outcome = tuple[int, str, str, int, float, str | None]
# One connection's step: its previous message's outcome, the message it starts,
# and the relay it starts it on.
Record = tuple[Outcome | None, int | None, str]


# PostgreSQL: a group's outcomes and starts in one UPDATE, from arrays (NULL: the
# column is left as it is; a start keeps the row's claim, an outcome ends it). The
# arrays go as array literals made here (psycopg's adaptation of Python lists is
# Python code, run on the helper's thread holding the GIL the engine needs).
_GROUP_SQL = (
    "UPDATE deliveries AS d SET state = v.state, reply = coalesce(v.reply, d.reply), "
    "attempts = coalesce(v.attempts, d.attempts), "
    "next_attempt_at = coalesce(v.next_at, d.next_attempt_at), "
    "relay = coalesce(v.relay, d.relay), updated_at = ?, "
    "claimed_by = CASE WHEN v.state = 'sending' THEN d.claimed_by ELSE '' END "
    "FROM unnest(?::text[], ?::text[], ?::bigint[], ?::float8[], ?::text[], ?::bigint[]) "
    "AS v(state, reply, attempts, next_at, relay, sid) "
    "WHERE d.issue = ? AND d.subscriber_id = v.sid"
)


# One row of a group: state, reply, attempts, next attempt at, relay (None: kept).
_Row = tuple[str, str | None, int | None, float | None, str | None]
_STARTED: _Row = ("sending", None, None, None, None)


def _texts(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal of texts (without NUL, which its text cannot hold:
    a relay's reply may carry one); None is NULL."""
    return (
        "{"
        + ",".join(
            "NULL"
            if v is None
            else '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "") + '"'
            for v in values
        )
        + "}"
    )


def _numbers(values: Sequence[int | float | None]) -> str:
    return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"


class DeliveryLog:
    """The delivery log of one issue's send (one thread's)."""

    def __init__(self, path: Target, issue: str, wait: float = DEFAULT_WAIT) -> None:
        self.path = path
        self.issue = issue
        self.wait = wait
        self.commits = 0  # transactions committed (for the benchmarks' figures)
        self.records = 0
        self.seconds = 0.0  # spent in those commits (the fsyncs; on PostgreSQL, round trips)
        try:
            self.db = connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None
        # SQLite: the engine writes (microseconds) and the helper COMMITs (the fsync).
        # PostgreSQL: every statement is a round trip, so the helper does it all, in
        # one statement, and the engine's thread never waits on the network. One
        # group at a time: two in flight on two connections were slower on two cores
        # (1,450-1,500 msgs/s against 1,890, bench_senders.py): the server's
        # processes then compete with the sender and the relay for the CPU.
        self.remote = dialect(self.db) == "postgresql"  # (the engine's helper only then)
        if self.remote:
            # The group's statement is the same every time but for its arrays'
            # lengths; PostgreSQL would plan it anew each time (a custom plan took
            # 115 µs of the server's CPU per group, as much as running it).
            self.db.execute("SET plan_cache_mode = force_generic_plan")
        self.busy = False  # a group is with the helper thread
        self._jobs: queue.SimpleQueue[tuple[list[Record], float] | None] = queue.SimpleQueue()
        self._error: StoreError | None = None
        self.fd, self._done = os.pipe()
        self._helper: threading.Thread | None = None

    def commit(self, records: list[Record], wait: float | None = None, here: bool = False) -> None:
        """Record each outcome and mark each started delivery 'sending', durably, in
        one transaction; a locked database is waited for up to ``wait`` seconds.
        ``here``: in the calling thread, not handed to the helper and back."""
        if not here:
            if self.start(records, wait):
                os.read(self.fd, 1)
                self.finish()
            return
        assert not self.busy, "one group at a time"
        wait = self.wait if wait is None else wait
        records = self._begin(records, wait)
        if records:
            try:
                self._end(records, wait)
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def start(self, records: list[Record], wait: float | None = None) -> bool:
        """Write the records and start their COMMIT (``fd`` becomes readable when it
        is done: then call ``finish``); False if there was nothing to record."""
        assert not self.busy, "one group at a time"
        wait = self.wait if wait is None else wait
        records = self._begin(records, wait)
        if not records:
            return False
        if self._helper is None:
            self._helper = threading.Thread(target=self._commits, name="delivery-log", daemon=True)
            self._helper.start()
        self.busy = True
        self._jobs.put((records, wait))
        return True

    def finish(self) -> None:
        """After ``fd`` was readable (and read): the group is durable, or StoreError."""
        self.busy = False
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _begin(self, records: list[Record], wait: float) -> list[Record]:
        """The records worth writing; on SQLite, written (the COMMIT is ``_end``'s)."""
        records = [r for r in records if r[0] is not None or r[1] is not None]
        if records and not self.remote:
            try:
                with_wait(self.path, wait, functools.partial(self._write, records))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot record a delivery: {exc}") from None
        return records

    def _end(self, records: list[Record], wait: float) -> None:
        """Make the group durable: SQLite's COMMIT, or PostgreSQL's whole statement."""
        began = time.monotonic()
        if self.remote:
            with_wait(self.path, wait, functools.partial(self._write_remote, records))
        else:
            self.db.execute("COMMIT")
        self.seconds += time.monotonic() - began
        self.commits += 1
        self.records += len(records)

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")
        return StoreError(f"{self.path}: cannot record a delivery: {exc}")

    def _commits(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._end(*job)
            except sqlite3.Error as exc:
                self._error = self._failed(exc)
            except StoreError as exc:
                self._error = exc
            os.write(self._done, b"x")

    def step(
        self, outcome: Outcome | None, start: int | None, wait: float | None = None, relay: str = ""
    ) -> None:
        """One record on its own."""
        self.commit([(outcome, start, relay)], wait)

    def _write_remote(self, batch: list[Record]) -> None:
        """The whole group in one statement (its own transaction: one round trip,
        one commit), or, when subscribers' statuses change too (rare), in one
        pipeline: BEGIN, the updates, COMMIT."""
        db = self.db
        assert isinstance(db, PgConnection)
        if all(o is None or o[5] is None for o, _, _ in batch):
            db.execute(_GROUP_SQL, self._group_args(batch))
            return
        try:
            with db.pipeline():
                self._write(batch)
                db.execute("COMMIT")
        except sqlite3.Error:  # the transaction is aborted: end it before a retry
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _group_args(self, batch: list[Record]) -> tuple[object, ...]:
        """One row per delivery: a message whose outcome and restart (a retry on
        the same connection) are both in the group gets both, in that order."""
        rows: dict[int, _Row] = {}
        for outcome, start, relay in batch:
            if outcome is not None:
                sid, state, reply, attempts, next_at, _ = outcome
                rows[sid] = (state, reply[:500], attempts, float(next_at), None)
            if start is not None:
                _, reply_, attempts_, next_at_, _ = rows.get(start, _STARTED)
                rows[start] = ("sending", reply_, attempts_, next_at_, relay)
        values = rows.values()
        return (
            now_iso(),
            _texts([r[0] for r in values]),
            _texts([r[1] for r in values]),
            _numbers([r[2] for r in values]),
            _numbers([r[3] for r in values]),
            _texts([r[4] for r in values]),
            _numbers(list(rows)),
            self.issue,
        )

    def _write(self, batch: list[Record]) -> None:
        """BEGIN and the records' updates; the caller's COMMIT makes them durable.
        One statement per kind of update for the whole group (on PostgreSQL each
        statement is a round trip; executemany pipelines them)."""
        stamp = now_iso()
        issue = self.issue
        outcomes: list[tuple[object, ...]] = []
        leaving: list[tuple[int, str, str]] = []  # (subscriber, reply, new status)
        starts: list[tuple[object, ...]] = []
        for outcome, start, relay in batch:
            if outcome is not None:
                sid, state, reply, attempts, next_at, status = outcome
                outcomes.append((state, reply[:500], attempts, next_at, stamp, issue, sid))
                if status is not None:
                    leaving.append((sid, reply[:500], status))
            if start is not None:
                starts.append((relay, stamp, issue, start))
        db = self.db
        try:
            # On PostgreSQL the log's updates (by key, of this sender's own claims)
            # need no turn among the writers, only row locks: senders commit side
            # by side, and the server flushes their commits together.
            db.execute("BEGIN" if self.remote else "BEGIN IMMEDIATE")
            if outcomes:
                db.executemany(
                    "UPDATE deliveries SET state = ?, reply = ?, attempts = ?, "
                    "next_attempt_at = ?, updated_at = ?, claimed_by = '' "
                    "WHERE issue = ? AND subscriber_id = ?",
                    outcomes,
                )
            if leaving:
                db.executemany(
                    "UPDATE subscribers SET status = ?, status_changed_at = ?, "
                    "updated_at = ? WHERE id = ? AND status = 'active'",
                    [(status, stamp, stamp, sid) for sid, _, status in leaving],
                )
                db.executemany(
                    "INSERT INTO events (subscriber_id, kind, detail, at) VALUES (?, ?, ?, ?)",
                    [(sid, status, reply, stamp) for sid, reply, status in leaving],
                )
            if starts:
                db.executemany(
                    "UPDATE deliveries SET state = 'sending', relay = ?, updated_at = ? "
                    "WHERE issue = ? AND subscriber_id = ?",
                    starts,
                )
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._helper is not None:
            self._jobs.put(None)
            self._helper.join()
        os.close(self.fd)
        os.close(self._done)
        self.db.close()
