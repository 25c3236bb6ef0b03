"""`newsletter db migrate-to`: a SQLite newsletter copied into PostgreSQL.

The copy is one transaction on the target: it is all there, verified, or not
there at all (a failure, a Ctrl-C, a kill -9 leave the target as it was). The
target must hold no newsletter data yet; the source is never changed. While
the copy runs, the source's send lock is held, so no send can add deliveries
the copy would miss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from composer.dburl import DatabaseURL
from composer.errors import StoreError
from composer.store.connection import sync_ids
from composer.store.database import Store

# In the order the foreign keys need; leases are not copied (they belong to a
# running process), nor schema_migrations (the target's own migrations made it).
TABLES = (
    "lists",
    "subscribers",
    "memberships",
    "sends",
    "deliveries",
    "events",
    "bounces",
    "signups",
)
WITH_IDS = ("lists", "subscribers", "events", "bounces", "signups")
BATCH = 5000


@dataclass
class Copied:
    rows: dict[str, int] = field(default_factory=dict)


def migrate_to(
    source: Path, target: DatabaseURL, progress: Callable[[str, int], None] | None = None
) -> Copied:
    """Copy every table of the SQLite newsletter ``source`` into ``target`` and
    check that each table's row count there equals the source's."""
    copied = Copied()
    with Store(source, create=False) as old, Store(target) as new:
        if old.dialect != "sqlite":
            raise StoreError(f"{source}: not a SQLite database")
        busy = [t for t in TABLES if new.query(f"SELECT 1 FROM {t} LIMIT 1")]
        if busy:
            raise StoreError(
                f"{target}: already holds newsletter data ({', '.join(busy)}); copy into an "
                "empty database (createdb NAME), never over another newsletter"
            )
        with new.transaction() as db:
            for table in TABLES:
                columns = _columns(old, table)
                marks = ", ".join("?" * len(columns))
                insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                cursor = old.db.execute(f"SELECT {', '.join(columns)} FROM {table}")
                n = 0
                while rows := cursor.fetchmany(BATCH):
                    db.executemany(insert, rows)
                    n += len(rows)
                    if progress is not None:
                        progress(table, n)
                copied.rows[table] = n
            for table in WITH_IDS:
                sync_ids(db, table)
            for table in TABLES:
                there = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                if there != copied.rows[table]:
                    raise StoreError(
                        f"{target}: {table} has {there} rows after the copy, the source "
                        f"{copied.rows[table]}; nothing was kept"
                    )
        new.analyze()
    return copied


def _columns(store: Store, table: str) -> list[str]:
    return [str(r[1]) for r in store.query(f"PRAGMA table_info({table})")]
