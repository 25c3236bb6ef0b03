"""The delivery log's write path during a send: commits in groups.

The engine drives every connection of a send from one thread. Whenever some
of them reach the point of delivery, it records them all in one transaction:
with 4 connections one fsync (``synchronous=FULL``) covers up to 4 messages,
and nothing contends for SQLite's write lock (the first release's threads did:
the busy handler's sleeps of 1.5-2 ms were its main cost per message).

The engine writes the records itself (``start``: in memory, microseconds) and
hands only the COMMIT, the fsync, to a helper thread, which says when it is
done through a pipe the engine polls with its sockets (``fd``, ``finish``). So
the connections whose messages are not in that group go on reading replies and
writing bodies during the fsync, and the records that arrive meanwhile make the
next group.

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

from composer.errors import StoreError
from composer.store.connection import DEFAULT_WAIT, Target, connect, with_wait
from composer.store.database import now_iso

# (subscriber id, state, server reply, attempts, next attempt at, new subscriber status)
Outcome = tuple[int, str, str, int, float, str | None]
# One connection's step: its previous message's outcome, the message it starts,
# and the relay it starts it on.
Record = tuple[Outcome | None, int | None, str]


class DeliveryLog:
    """The delivery log of one issue's send (one thread's)."""

    def __init__(self, path: Target, issue: str, wait: float = DEFAULT_WAIT) -> None:
        self.path = path
        self.issue = issue
        self.wait = wait
        self.commits = 0  # transactions committed (for the benchmarks' figures)
        self.records = 0
        try:
            self.db = connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None
        self.busy = False  # a COMMIT is with the helper thread
        self._jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._error: StoreError | None = None
        self.fd, self._done = os.pipe()
        self._helper: threading.Thread | None = None

    def commit(self, records: list[Record], wait: float | None = None) -> None:
        """Record each outcome and mark each started delivery 'sending', durably, in
        one transaction; a locked database is waited for up to ``wait`` seconds."""
        if self.start(records, wait):
            os.read(self.fd, 1)
            self.finish()

    def start(self, records: list[Record], wait: float | None = None) -> bool:
        """Write the records and start their COMMIT (``fd`` becomes readable when it
        is done: then call ``finish``); False if there was nothing to record."""
        assert not self.busy, "one group at a time"
        records = [r for r in records if r[0] is not None or r[1] is not None]
        if not records:
            return False
        try:
            with_wait(
                self.path,
                self.wait if wait is None else wait,
                functools.partial(self._write, records),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record a delivery: {exc}") from None
        if self._helper is None:
            self._helper = threading.Thread(target=self._commits, name="delivery-log", daemon=True)
            self._helper.start()
        self.busy = True
        self._jobs.put(len(records))
        return True

    def finish(self) -> None:
        """After ``fd`` was readable (and read): the group is durable, or StoreError."""
        self.busy = False
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _commits(self) -> None:
        while (n := self._jobs.get()) is not None:
            try:
                self.db.execute("COMMIT")
                self.commits += 1
                self.records += n
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                self._error = StoreError(f"{self.path}: cannot record a delivery: {exc}")
            os.write(self._done, b"x")

    def step(
        self, outcome: Outcome | None, start: int | None, wait: float | None = None, relay: str = ""
    ) -> None:
        """One record on its own."""
        self.commit([(outcome, start, relay)], wait)

    def _write(self, batch: list[Record]) -> None:
        """BEGIN and the records' updates; the caller's COMMIT makes them durable."""
        stamp = now_iso()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for outcome, start, relay in batch:
                if outcome is not None:
                    sid, state, reply, attempts, next_at, status = outcome
                    db.execute(
                        "UPDATE deliveries SET state = ?, reply = ?, attempts = ?, "
                        "next_attempt_at = ?, updated_at = ?, claimed_by = '' "
                        "WHERE issue = ? AND subscriber_id = ?",
                        (state, reply[:500], attempts, next_at, stamp, self.issue, sid),
                    )
                    if status is not None:
                        db.execute(
                            "UPDATE subscribers SET status = ?, status_changed_at = ?, "
                            "updated_at = ? WHERE id = ? AND status = 'active'",
                            (status, stamp, stamp, sid),
                        )
                        db.execute(
                            "INSERT INTO events (subscriber_id, kind, detail, at) "
                            "VALUES (?, ?, ?, ?)",
                            (sid, status, reply[:500], stamp),
                        )
                if start is not None:
                    db.execute(
                        "UPDATE deliveries SET state = 'sending', relay = ?, updated_at = ? "
                        "WHERE issue = ? AND subscriber_id = ?",
                        (relay, stamp, self.issue, start),
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
