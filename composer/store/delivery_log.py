"""The delivery log's write path during a send: one connection per worker."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from composer.errors import StoreError
from composer.store.database import now_iso

# (subscriber id, state, server reply, attempts, next attempt at, new subscriber status)
Outcome = tuple[int, str, str, int, float, str | None]


class DeliveryLog:
    """A worker's own connection for recording results, one commit per message.

    ``step`` writes the outcome of the previous message and marks the next one
    'sending' in the same transaction, so a crash leaves at most one row per
    connection in 'sending' (then reported in doubt), at one commit a message.
    """

    def __init__(self, path: Path, issue: str) -> None:
        self.path = path
        self.issue = issue
        try:
            self.db = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None

    def step(self, outcome: Outcome | None, start: int | None) -> None:
        """Record ``outcome`` and mark delivery ``start`` 'sending', in one commit."""
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
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot record a delivery: {exc}") from None

    def close(self) -> None:
        self.db.close()
