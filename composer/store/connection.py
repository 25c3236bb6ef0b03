"""Opening the database (a SQLite file, or PostgreSQL: ``store.postgres``), and
waiting for a database another process holds locked.

Every connection runs in WAL mode with ``synchronous=FULL``: a committed
transaction survives a crash of the process *and* a power loss. With
``NORMAL``, a power loss may roll back the last commits; for the delivery
log that can turn a message recorded as sent (or in flight) back into
"not yet sent", and the next run would mail it a second time (see
docs/NOTES.md for the measured cost of FULL).

A writer that finds the database locked (another process in a long write
transaction, a backup) waits, with a warning saying so, up to ``wait``
seconds; then it stops with an error that says what to do. It never hangs.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from composer.dburl import DatabaseURL
from composer.errors import StoreError
from composer.store import postgres
from composer.store.postgres import PgConnection

log = logging.getLogger(__name__)

DEFAULT_WAIT = 600.0  # seconds a command waits for a locked database
_BUSY_STEP_MS = 1000  # SQLite's own busy handler waits this long per try
_QUIET_WAIT = 5.0  # seconds of waiting before saying so

T = TypeVar("T")


# Where the database is: a SQLite file, or a PostgreSQL server (store.postgres).
Target = Path | DatabaseURL
Connection = sqlite3.Connection | PgConnection


def connect(target: Target) -> Connection:
    if isinstance(target, DatabaseURL):
        return postgres.connect(target)
    return connect_sqlite(target)


def dialect(db: Connection) -> str:
    """The engine: "sqlite" or "postgresql"."""
    return getattr(db, "dialect", "sqlite")


def sync_ids(db: Connection, table: str) -> None:
    """After rows were inserted with ids of our choosing: PostgreSQL's identity
    sequence is moved past them (SQLite numbers from the largest id by itself)."""
    if dialect(db) == "postgresql":
        db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )


def connect_sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(
        path, isolation_level=None, timeout=_BUSY_STEP_MS / 1000, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout={_BUSY_STEP_MS}")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def with_wait(path: Target, wait: float, attempt: Callable[[], T]) -> T:
    """``attempt()``, tried again while the database is locked, for up to ``wait`` s."""
    started = time.monotonic()
    deadline = started + wait
    warned = False
    while True:
        try:
            return attempt()
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise
            # Our own connections take turns too: only a wait this long is news.
            if not warned and time.monotonic() - started >= min(_QUIET_WAIT, wait):
                log.warning(
                    "%s is locked by another process; waiting up to %g s for it", path, wait
                )
                warned = True
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{path}: still locked by another process after {wait:g} s; stop what "
                    "holds it (or allow longer with NEWSLETTER_DB_WAIT), then run again"
                ) from None
