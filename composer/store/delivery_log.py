"""The delivery log's write path during a send: one connection per worker."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from composer.errors import StoreError
from composer.store.connection import DEFAULT_WAIT, connect, with_wait
from composer.store.database import now_iso

# (subscriber id, state, server reply, attempts, next attempt at, new subscriber status)
Outcome = tuple[int, str, str, int, float, str | None]


class DeliveryLog:
    """A worker's own connection for recording results, one commit per message.

    ``step`` writes the outcome of the previous message and marks the next one
    'sending' in the same transaction. The engine calls it just before it writes
    a message's final ``.`` (or renames it into the outbox), so a crash leaves at
    most one row per connection in 'sending' (then reported in doubt), and only
    for a message whose end may have reached the server; at one commit a message.
    """

    def __init__(self, path: Path, issue: str, wait: float = DEFAULT_WAIT) -> None:
        self.path = path
        self.issue = issue
        self.wait = wait
        try:
            self.db = connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None

    def step(self, outcome: Outcome | None, start: int | None, wait: float | None = None) -> None:
        """Record ``outcome`` and mark delivery ``start`` 'sending', in one commit;
        a locked database is waited for up to ``wait`` seconds (default: the log's)."""
        if outcome is None and start is None:
            return
        try:
            with_wait(
                self.path, self.wait if wait is None else wait, lambda: self._step(outcome, start)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record a delivery: {exc}") from None

    def _step(self, outcome: Outcome | None, start: int | None) -> None:
        stamp = now_iso()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if outcome is not None:
                sid, state, reply, attempts, next_at, status = outcome
                self.db.execute(
                    "UPDATE deliveries SET state = ?, reply = ?, attempts = ?, "
                    "next_attempt_at = ?, updated_at = ? WHERE issue = ? AND subscriber_id = ?",
                    (state, reply[:500], attempts, next_at, stamp, self.issue, sid),
                )
                if status is not None:
                    self.db.execute(
                        "UPDATE subscribers SET status = ?, status_changed_at = ?, "
                        "updated_at = ? WHERE id = ? AND status = 'active'",
                        (status, stamp, stamp, sid),
                    )
                    self.db.execute(
                        "INSERT INTO events (subscriber_id, kind, detail, at) VALUES (?, ?, ?, ?)",
                        (sid, status, reply[:500], stamp),
                    )
            if start is not None:
                self.db.execute(
                    "UPDATE deliveries SET state = 'sending', updated_at = ? "
                    "WHERE issue = ? AND subscriber_id = ?",
                    (stamp, self.issue, start),
                )
            self.db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()
