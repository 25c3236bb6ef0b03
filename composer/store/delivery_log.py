"""The delivery log's write path during a send: one writer, commits in groups.

Every connection of a send hands its records to one writer thread (``step``)
and waits until they are durable. The writer commits whatever has arrived
from all connections in one transaction, so that with 4 connections one
fsync (``synchronous=FULL``) covers up to 4 messages, and the connections
never contend for SQLite's write lock (the busy handler's sleeps of 1.5-2 ms
were the first release's main cost per message).

A step records the outcome of a connection's previous message and marks its
next one 'sending'. The engine makes it just before it writes a message's
final ``.`` (or renames it into the outbox), so a crash leaves at most one row
per connection in 'sending' (then reported in doubt), and only for a message
whose end may have reached the server.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from composer.errors import StoreError
from composer.store.connection import DEFAULT_WAIT, connect, with_wait
from composer.store.database import now_iso

# (subscriber id, state, server reply, attempts, next attempt at, new subscriber status)
Outcome = tuple[int, str, str, int, float, str | None]


@dataclass
class _Request:
    outcome: Outcome | None
    start: int | None
    wait: float
    done: threading.Event = field(default_factory=threading.Event)
    error: StoreError | None = None


class DeliveryLog:
    """The delivery log of one issue's send; ``step`` is safe from any thread."""

    def __init__(self, path: Path, issue: str, wait: float = DEFAULT_WAIT) -> None:
        self.path = path
        self.issue = issue
        self.wait = wait
        self.commits = 0  # transactions committed (for the benchmarks' figures)
        self.records = 0
        try:
            self.db = connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="delivery-log", daemon=True)
        self._writer.start()

    def step(self, outcome: Outcome | None, start: int | None, wait: float | None = None) -> None:
        """Record ``outcome`` and mark delivery ``start`` 'sending', durably, before
        returning; a locked database is waited for up to ``wait`` seconds."""
        if outcome is None and start is None:
            return
        request = _Request(outcome, start, self.wait if wait is None else wait)
        with self._cond:
            if self._closed:
                raise StoreError(f"{self.path}: the delivery log is closed")
            self._pending.append(request)
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            wait = max(r.wait for r in batch)
            try:
                with_wait(self.path, wait, functools.partial(self._commit, batch))
                self.commits += 1
                self.records += len(batch)
            except StoreError as exc:
                for r in batch:
                    r.error = exc
            except sqlite3.Error as exc:
                error = StoreError(f"{self.path}: cannot record a delivery: {exc}")
                for r in batch:
                    r.error = error
            for r in batch:
                r.done.set()

    def _commit(self, batch: list[_Request]) -> None:
        stamp = now_iso()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for r in batch:
                if r.outcome is not None:
                    sid, state, reply, attempts, next_at, status = r.outcome
                    db.execute(
                        "UPDATE deliveries SET state = ?, reply = ?, attempts = ?, "
                        "next_attempt_at = ?, updated_at = ? WHERE issue = ? AND subscriber_id = ?",
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
                if r.start is not None:
                    db.execute(
                        "UPDATE deliveries SET state = 'sending', updated_at = ? "
                        "WHERE issue = ? AND subscriber_id = ?",
                        (stamp, self.issue, r.start),
                    )
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Commit what is pending, then stop the writer and close the connection."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._writer.join()
        self.db.close()
