"""SQLite storage: migrations, subscribers, lists, the delivery log, events, leases.

Every sqlite3 error is re-raised as ``StoreError`` naming the database file.
How connections are opened (WAL, ``synchronous=FULL``) and how a locked
database is waited for is in ``store.connection``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from composer.errors import StoreError
from composer.store.connection import (
    DEFAULT_WAIT,
    Connection,
    Target,
    connect,
    dialect,
    sync_ids,
    with_wait,
)
from composer.store.migrations import MIGRATIONS
from composer.store.postgres import PgConnection

log = logging.getLogger(__name__)

STATUSES = ("active", "unsubscribed", "bounced", "complained")

# Mailbox providers an editor watches (complaint rates are per provider).
PROVIDERS = {
    "gmail.com": "gmail.com",
    "googlemail.com": "gmail.com",
    "outlook.com": "outlook.com/hotmail.com",
    "hotmail.com": "outlook.com/hotmail.com",
    "live.com": "outlook.com/hotmail.com",
    "msn.com": "outlook.com/hotmail.com",
    "yahoo.com": "yahoo.com",
    "ymail.com": "yahoo.com",
    "aol.com": "yahoo.com",
}


def provider(address: str) -> str:
    """The mailbox provider of an address, by its domain (else "others")."""
    domain = address.rpartition("@")[2].lower()
    return PROVIDERS.get(domain) or ("yahoo.com" if domain.startswith("yahoo.") else "others")


STATES = ("pending", "sending", "sent", "deferred", "failed", "in_doubt")


_encode = json.JSONEncoder(ensure_ascii=False).encode
# A str as JSON, the way json.dumps(..., ensure_ascii=False) writes it.
json_string = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)


def _json(value: dict[str, Any]) -> str:
    """JSON of a subscriber's attributes: text values (from CSV) the fast way."""
    if all(type(v) is str for v in value.values()):
        return (
            "{" + ", ".join(f"{json_string(k)}: {json_string(v)}" for k, v in value.items()) + "}"
        )
    return str(_encode(value))


_stamp: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """The time to the second, UTC (made once a second: the delivery log asks for it
    with every commit)."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    language: str
    attributes: dict[str, Any]
    lists: list[str]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Lease:
    """Who holds a named lease (``send``) on this database, and until when."""

    name: str
    holder: str  # host:pid:process start time
    host: str
    pid: int
    since: str
    expires: float  # time.time()


@dataclass(frozen=True)
class Delivery:
    subscriber_id: int
    email: str
    name: str
    attempts: int
    language: str = ""  # picks the edition


def _has_schema(db: Connection) -> bool:
    """Whether a PostgreSQL database holds a newsletter (its migrations table)."""
    return bool(
        db.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'schema_migrations' "
            "AND table_schema = current_schema()"
        ).fetchone()
    )


class Store:
    """One connection to the newsletter's database."""

    def __init__(self, path: Target, create: bool = True, wait: float = DEFAULT_WAIT) -> None:
        """Open (and migrate) the database; ``create=False`` refuses to make a new one,
        for commands that only read: a missing database is then a clear error.
        ``wait``: how long to wait for a database another process holds locked."""
        self.path = path
        self.wait = wait
        self._list_ids: dict[str, int] = {}
        if not create and isinstance(path, Path) and not path.exists():
            raise StoreError(
                f"{path}: no database yet (nothing imported or sent from this "
                "newsletter); add subscribers with `newsletter subscribers "
                "import FILE`"
            )
        try:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = connect(path)
            self.dialect = dialect(self.db)
            if self.dialect == "sqlite":
                with_wait(path, wait, lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            elif not create and not _has_schema(self.db):
                self.db.close()
                raise StoreError(
                    f"{path}: no database yet (no newsletter in it: nothing imported or sent); "
                    "add subscribers with `newsletter subscribers import FILE`, or copy a "
                    "newsletter in with `newsletter db migrate-to`"
                )
            self.migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the database: {exc.strerror}") from None

    @staticmethod
    def exists(target: Target) -> bool:
        """Whether ``target`` holds a newsletter already (without making one)."""
        if isinstance(target, Path):
            return target.exists()
        try:
            db = connect(target)
        except sqlite3.Error as exc:
            raise StoreError(f"{target}: cannot open the database: {exc}") from None
        try:
            return _has_schema(db)
        finally:
            db.close()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; a locked database
        is waited for (``self.wait``)."""
        try:
            with_wait(self.path, self.wait, lambda: self.db.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        try:
            yield self.db
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {exc}") from None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {exc}") from None

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return with_wait(
                self.path, self.wait, lambda: self.db.execute(sql, tuple(args)).fetchall()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def migrate(self) -> int:
        """Apply the migrations not yet applied; return the schema version. A new
        database's first table is made under the write lock: two processes that
        open it at once (``serve``'s threads) must not both make it."""
        if self.dialect == "postgresql":
            present = _has_schema(self.db)
        else:
            present = bool(
                with_wait(
                    self.path,
                    self.wait,
                    lambda: self.db.execute(
                        "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
                    ).fetchone(),
                )
            )
        if not present:
            with self.transaction() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
        done = {row[0] for row in self.db.execute("SELECT version FROM schema_migrations")}
        if len(done) > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: made by a newer newsletter-composer "
                f"(schema {max(done)}); upgrade to use it"
            )
        for version, step in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            with self.transaction() as db:
                if db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ).fetchone():
                    continue  # another process applied it while we waited for the lock
                for statement in step.statements:
                    db.execute(statement)
                if step.sqlite is not None and isinstance(db, sqlite3.Connection):
                    step.sqlite(db)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_iso()))
            log.info("%s: applied migration %d (%s)", self.path, version, step.name)
        return len(MIGRATIONS)

    # -- subscribers ----------------------------------------------------------

    def list_id(self, db: Connection, name: str) -> int:
        db.execute("INSERT OR IGNORE INTO lists (name) VALUES (?)", (name,))
        row = db.execute("SELECT id FROM lists WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def upsert_many(
        self,
        db: Connection,
        rows: Sequence[tuple[str, str, str, dict[str, Any] | str, Sequence[str], str | None]],
        stamp: str,
    ) -> list[str]:
        """``upsert`` for a batch of rows (email, name, language, attributes, lists,
        status), in order, with the same rules and outcomes, in a few statements:
        one look-up of the batch's addresses, one insert, one update, one insert of
        memberships. Rows for the same address within the batch merge in order.

        Attributes may come as JSON text already (the import writes it directly:
        encoding a dict per row was a fifth of its time). New subscribers get their
        ids here, as SQLite would (the largest id plus one, in order), so that the
        memberships need no second look-up; the caller's transaction keeps anyone
        else from inserting in between."""
        emails = list(dict.fromkeys(r[0] for r in rows))
        known: dict[str, list[Any]] = {}
        for start in range(0, len(emails), 900):
            part = emails[start : start + 900]
            marks = ",".join("?" * len(part))
            for sid, email, status, name, language, attributes in db.execute(
                "SELECT id, email, status, name, language, attributes FROM subscribers "
                f"WHERE email IN ({marks})",
                part,
            ):
                known[email] = [sid, status, name, language, attributes, False]
        next_id = int(db.execute("SELECT coalesce(max(id), 0) FROM subscribers").fetchone()[0])
        first_new = next_id + 1
        outcomes = []
        memberships: set[tuple[str, int]] = set()
        for email, name, language, attributes, row_lists, status in rows:
            state = known.get(email)
            if state is None:
                next_id += 1
                if not isinstance(attributes, str):
                    attributes = _json(attributes) if attributes else "{}"
                state = known[email] = [
                    next_id,
                    status or "active",
                    name,
                    language,
                    attributes,
                    False,
                ]
                outcomes.append("added")
            else:
                old_status = state[1]
                if status in ("unsubscribed", "bounced", "complained") and old_status == "active":
                    state[1] = status
                state[2] = name or state[2]
                state[3] = language or state[3]
                if type(attributes) is str:
                    attributes = json.loads(attributes) if attributes != "{}" else None
                if attributes:
                    state[4] = _json({**json.loads(state[4] or "{}"), **attributes})
                state[5] = state[0] < first_new  # a row already stored: update it
                outcomes.append("suppressed" if old_status != "active" else "updated")
            for list_name in row_lists:
                memberships.add((list_name, state[0]))
        db.executemany(
            "INSERT INTO subscribers (id, email, name, status, language, attributes, "
            "created_at, updated_at, status_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (v[0], e, v[2], v[1], v[3], v[4], stamp, stamp, stamp)
                for e, v in known.items()
                if v[0] >= first_new
            ),
        )
        if next_id >= first_new:
            sync_ids(db, "subscribers")
        db.executemany(
            "UPDATE subscribers SET name = ?, language = ?, attributes = ?, updated_at = ?, "
            "status_changed_at = CASE WHEN status = ? THEN status_changed_at ELSE ? END, "
            "status = ? WHERE id = ?",
            ((v[2], v[3], v[4], stamp, v[1], stamp, v[1], v[0]) for v in known.values() if v[5]),
        )
        if memberships:
            db.executemany(
                "INSERT OR IGNORE INTO memberships VALUES (?, ?)",
                sorted((self._list_id(db, name), sid) for name, sid in memberships),
            )
        return outcomes

    def _list_id(self, db: Connection, name: str) -> int:
        """``list_id``, remembered for this connection (lists are never renamed)."""
        if name not in self._list_ids:
            self._list_ids[name] = self.list_id(db, name)
        return self._list_ids[name]

    def upsert(
        self,
        db: Connection,
        email: str,
        name: str,
        language: str,
        attributes: dict[str, Any],
        lists: Iterable[str],
        status: str | None,
        stamp: str,
    ) -> tuple[int, str]:
        """Insert or merge one subscriber; returns (id, outcome).

        outcome: "added", "updated", or "suppressed" when the address had
        unsubscribed, bounced or complained (it stays so: re-importing an old
        list must never re-subscribe anyone).
        """
        row = db.execute(
            "SELECT id, status, name, language, attributes FROM subscribers WHERE email = ?",
            (email,),
        ).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO subscribers (email, name, status, language, attributes, "
                "created_at, updated_at, status_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING id",
                (
                    email,
                    name,
                    status or "active",
                    language,
                    json.dumps(attributes, ensure_ascii=False),
                    stamp,
                    stamp,
                    stamp,
                ),
            )
            sid, outcome = int(cur.fetchone()[0]), "added"
        else:
            sid, old_status = int(row[0]), row[1]
            merged = {**json.loads(row[4] or "{}"), **attributes}
            new_status = old_status
            if status in ("unsubscribed", "bounced", "complained") and old_status == "active":
                new_status = status
            db.execute(
                "UPDATE subscribers SET name = ?, language = ?, attributes = ?, status = ?, "
                "updated_at = ?, status_changed_at = CASE WHEN status = ? "
                "THEN status_changed_at ELSE ? END WHERE id = ?",
                (
                    name or row[2],
                    language or row[3],
                    json.dumps(merged, ensure_ascii=False),
                    new_status,
                    stamp,
                    new_status,
                    stamp,
                    sid,
                ),
            )
            outcome = "suppressed" if old_status != "active" else "updated"
        for list_name in lists:
            db.execute(
                "INSERT OR IGNORE INTO memberships VALUES (?, ?)",
                (self.list_id(db, list_name), sid),
            )
        return sid, outcome

    def set_status(self, email: str, status: str, detail: str) -> Subscriber | None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, status FROM subscribers WHERE email = ?", (email,)
            ).fetchone()
            if row is None:
                return None
            if row[1] != status:
                self._set_status(db, int(row[0]), status, detail)
        return self.subscriber(email)

    def _set_status(self, db: Connection, sid: int, status: str, detail: str) -> None:
        stamp = now_iso()
        db.execute(
            "UPDATE subscribers SET status = ?, status_changed_at = ?, updated_at = ? WHERE id = ?",
            (status, stamp, stamp, sid),
        )
        db.execute(
            "INSERT INTO events (subscriber_id, kind, detail, at) VALUES (?, ?, ?, ?)",
            (sid, status, detail, stamp),
        )

    def record_bounce(
        self,
        message: str,
        recipient: str,
        subscriber_id: int | None,
        issue: str,
        kind: str,
        status: str,
        diagnostic: str,
        bounced_at: str,
        soft_limit: int,
        soft_days: float,
    ) -> str | None:
        """Apply one returned message, once (``message`` is its fingerprint): a
        hard bounce or enough soft ones bounce the subscriber, a complaint
        unsubscribes them; policy refusals count against the issue only. The
        subscriber's new status, if it changed; None as well for a message
        already applied."""
        with self.transaction() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO bounces (message, recipient, subscriber_id, issue, kind, "
                "status, diagnostic, bounced_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message,
                    recipient,
                    subscriber_id,
                    issue,
                    kind,
                    status,
                    diagnostic[:500],
                    bounced_at,
                    now_iso(),
                ),
            ).rowcount
            if not added or subscriber_id is None:
                return None
            row = db.execute(
                "SELECT status FROM subscribers WHERE id = ?", (subscriber_id,)
            ).fetchone()
            if row is None or row[0] != "active":
                return None
            detail = f"{kind} bounce of {issue or 'an issue'}: {status} {diagnostic}"[:300]
            if kind == "hard":
                self._set_status(db, subscriber_id, "bounced", detail)
                return "bounced"
            if kind == "complaint":
                self._set_status(db, subscriber_id, "complained", f"complaint about {issue}")
                return "complained"
            if kind == "soft" and self._soft_streak(db, subscriber_id, soft_limit, soft_days):
                self._set_status(
                    db, subscriber_id, "bounced", f"{soft_limit} soft bounces; {detail}"
                )
                return "bounced"
        return None

    @staticmethod
    def _soft_streak(db: Connection, sid: int, limit: int, days: float) -> bool:
        """Whether the subscriber's last ``limit`` issues sent all soft-bounced,
        the first and the last of those bounces at least ``days`` apart (no
        successful delivery between: an issue sent without a bounce breaks it)."""
        sent = [
            r[0]
            for r in db.execute(
                "SELECT issue FROM deliveries WHERE subscriber_id = ? AND state = 'sent' "
                "ORDER BY issue DESC LIMIT ?",
                (sid, limit),
            )
        ]
        if len(sent) < limit:
            return False
        times = []
        for issue in sent:
            found = db.execute(
                "SELECT min(bounced_at) FROM bounces WHERE subscriber_id = ? AND issue = ? "
                "AND kind = 'soft'",
                (sid, issue),
            ).fetchone()[0]
            if found is None:
                return False
            times.append(found)
        first = dt.datetime.fromisoformat(min(times))
        last = dt.datetime.fromisoformat(max(times))
        return (last - first).total_seconds() >= days * 86400

    def bounce_counts(self, issue: str) -> dict[str, dict[str, int]]:
        """Returned messages of ``issue`` by kind, per mailbox provider."""
        out: dict[str, dict[str, int]] = {}
        for recipient, kind, n in self.query(
            "SELECT recipient, kind, count(*) FROM bounces WHERE issue = ? "
            "GROUP BY recipient, kind",
            (issue,),
        ):
            per = out.setdefault(provider(recipient), {})
            per[kind] = per.get(kind, 0) + n
        return out

    def sent_by_provider(self, issue: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for email, n in self.query(
            "SELECT s.email, count(*) FROM deliveries d JOIN subscribers s "
            "ON s.id = d.subscriber_id WHERE d.issue = ? AND d.state = 'sent' GROUP BY s.email",
            (issue,),
        ):
            key = provider(email)
            out[key] = out.get(key, 0) + n
        return out

    def complaints(self, issue: str) -> tuple[int, int]:
        """(complaints, messages sent) of ``issue``."""
        complaints = self.query(
            "SELECT count(*) FROM bounces WHERE issue = ? AND kind = 'complaint'", (issue,)
        )[0][0]
        return int(complaints), self.counts(issue)["sent"]

    def previous_issue(self, issue: str) -> str | None:
        """The latest issue sent before ``issue``."""
        rows = self.query(
            "SELECT max(issue) FROM deliveries WHERE issue < ? AND state = 'sent'", (issue,)
        )
        return rows[0][0] if rows and rows[0][0] else None

    def unsubscribe_id(self, sid: int, detail: str) -> bool:
        """Unsubscribe by id (one-click); True if that subscriber exists."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM subscribers WHERE id = ?", (sid,)).fetchone()
            if row is None:
                return False
            if row[0] == "active":
                self._set_status(db, sid, "unsubscribed", detail)
        return True

    def remove(self, email: str) -> bool:
        """Delete the subscriber and every record of the address, consent included
        (the right to erasure); True if there was anything."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM subscribers WHERE email = ?", (email,)).rowcount
            gone += db.execute("DELETE FROM signups WHERE email = ?", (email,)).rowcount
            return gone > 0

    def _subscriber(self, row: tuple[Any, ...]) -> Subscriber:
        return Subscriber(
            id=row[0],
            email=row[1],
            name=row[2],
            status=row[3],
            language=row[4],
            attributes=json.loads(row[5] or "{}"),
            lists=sorted(filter(None, (row[6] or "").split("\x1f"))),
            created_at=row[7],
            updated_at=row[8],
        )

    _SELECT = (
        "SELECT s.id, s.email, s.name, s.status, s.language, s.attributes, "
        "(SELECT group_concat(l.name, char(31)) FROM memberships m "
        " JOIN lists l ON l.id = m.list_id WHERE m.subscriber_id = s.id), "
        "s.created_at, s.updated_at FROM subscribers s"
    )

    def subscriber(self, email: str) -> Subscriber | None:
        rows = self.query(self._SELECT + " WHERE s.email = ?", (email,))
        return self._subscriber(rows[0]) if rows else None

    def subscriber_by_id(self, sid: int) -> Subscriber | None:
        rows = self.query(self._SELECT + " WHERE s.id = ?", (sid,))
        return self._subscriber(rows[0]) if rows else None

    def _filter(self, status: str | None, list_name: str | None) -> tuple[str, list[Any]]:
        where, args = [], []
        if status:
            where.append("s.status = ?")
            args.append(status)
        if list_name:
            where.append(
                "s.id IN (SELECT m.subscriber_id FROM memberships m JOIN lists l "
                "ON l.id = m.list_id WHERE l.name = ?)"
            )
            args.append(list_name)
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def subscribers(
        self, status: str | None = None, list_name: str | None = None, batch: int = 1000
    ) -> Iterator[Subscriber]:
        """All matching subscribers by id, read in batches (memory stays flat)."""
        where, args = self._filter(status, list_name)
        last = 0
        joiner = " AND " if where else " WHERE "
        while True:
            rows = self.query(
                self._SELECT + where + joiner + "s.id > ? ORDER BY s.id LIMIT ?",
                [*args, last, batch],
            )
            yield from (self._subscriber(r) for r in rows)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def count_by_status(self, list_name: str | None = None) -> dict[str, int]:
        where, args = self._filter(None, list_name)
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.query(
            f"SELECT s.status, count(*) FROM subscribers s{where} GROUP BY s.status", args
        ):
            counts[status] = n
        return counts

    def list_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM lists WHERE name = ?", (name,)))

    # -- sends and deliveries -------------------------------------------------

    def send_record(self, issue: str) -> tuple[str, str] | None:
        rows = self.query("SELECT digest, subject FROM sends WHERE issue = ?", (issue,))
        return (rows[0][0], rows[0][1]) if rows else None

    def start_send(self, issue: str, digest: str, subject: str) -> None:
        stamp = now_iso()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sends VALUES (?, ?, ?, ?, ?) ON CONFLICT (issue) DO UPDATE "
                "SET digest = excluded.digest, subject = excluded.subject, "
                "updated_at = excluded.updated_at",
                (issue, digest, subject, stamp, stamp),
            )

    @staticmethod
    def audience_sql(list_name: str | None, waiting_too: bool = False) -> tuple[str, list[Any]]:
        """The one audience rule: active subscribers (of a list) who have no delivery
        row for the issue yet (``waiting_too``: or one not yet sent). The SQL takes
        the issue as its first parameter, then the returned arguments."""
        waiting = " AND d.state NOT IN ('pending', 'deferred')" if waiting_too else ""
        sql = (
            "FROM subscribers s WHERE s.status = 'active' AND NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.issue = ? AND d.subscriber_id = s.id"
            + waiting
            + ")"
        )
        if list_name:
            sql += (
                " AND s.id IN (SELECT m.subscriber_id FROM memberships m JOIN lists l "
                "ON l.id = m.list_id WHERE l.name = ?)"
            )
        return sql, ([list_name] if list_name else [])

    def count_new(self, issue: str, list_name: str | None) -> int:
        sql, args = self.audience_sql(list_name)
        return int(self.query("SELECT count(*) " + sql, [issue, *args])[0][0])

    def enqueue(self, issue: str, list_name: str | None, limit: int | None) -> int:
        sql, args = self.audience_sql(list_name)
        tail = " ORDER BY s.id" + (" LIMIT ?" if limit is not None else "")
        with self.transaction() as db:
            added = int(
                db.execute(
                    "INSERT INTO deliveries (issue, subscriber_id, state, updated_at) "
                    "SELECT ?, s.id, 'pending', ? " + sql + tail,
                    [issue, now_iso(), issue, *args, *([limit] if limit is not None else [])],
                ).rowcount
            )
        if added >= 1000:
            self.analyze("deliveries")
        return added

    def analyze(self, table: str = "") -> None:
        """Fresh planner statistics after many rows came at once (PostgreSQL plans a
        claim by them; SQLite needs nothing): of one table, or of all."""
        if self.dialect == "postgresql":
            sql = f"ANALYZE {table}".strip()
            try:
                with_wait(self.path, self.wait, lambda: self.db.execute(sql))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    def settle_interrupted(self, issue: str) -> int:
        """Rows left 'sending' by a run that died are in doubt: the message may
        or may not have reached the server. Call only while holding the send lock.
        (Rows a sender claimed are its own, settled by ``reap`` once it is gone.)"""
        with self.transaction() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'in_doubt', updated_at = ?, reply = "
                "'the sending process stopped while this message was in flight' "
                "WHERE issue = ? AND state = 'sending' AND claimed_by = ''",
                (now_iso(), issue),
            ).rowcount

    # -- several senders of one issue (PostgreSQL) -----------------------------

    def claim(
        self, issue: str, holder: str, now: float, limit: int, after: int = 0
    ) -> list[Delivery]:
        """Up to ``limit`` due deliveries nobody holds, in id order, now held by the
        sender ``holder``. Rows another sender is claiming at this instant are
        skipped, not waited for (SKIP LOCKED): senders never queue behind each other.
        A claim is not worth an fsync (see ``PgConnection.unsynced``).

        ``after``: the highest id this sender claimed before. Pending rows are
        looked for past it first: the rows before it, sent or claimed, are then
        not read again by every claim (a quadratic cost over a big send); those
        given back in the meantime (a sender stopped) are taken once none are
        left past it."""
        got = self._claim(issue, holder, now, limit, after)
        if after and len(got) < limit:
            got = sorted(
                got + self._claim(issue, holder, now, limit - len(got), 0),
                key=lambda d: d.subscriber_id,
            )
        return got

    def _claim(self, issue: str, holder: str, now: float, limit: int, after: int) -> list[Delivery]:
        # Pending rows in id order from an index on (issue, ..., id), then deferred
        # ones come due: each stops at the limit (a queue's pattern).
        pick = (
            "(SELECT d.subscriber_id FROM deliveries d JOIN subscribers s "
            "ON s.id = d.subscriber_id AND s.status = 'active' WHERE d.issue = ? AND "
            "d.state = {state} AND d.claimed_by = '' {past}ORDER BY d.subscriber_id "
            "LIMIT ? FOR UPDATE OF d SKIP LOCKED)"
        )
        past = "AND d.subscriber_id > ? AND s.id > ? " if after else ""
        sql = (
            "WITH pending AS "
            + pick.format(state="'pending'", past=past)
            + ", due AS "
            + pick.format(state="'deferred' AND d.next_attempt_at <= ?", past="")
            + ", claimed AS (UPDATE deliveries AS d SET claimed_by = ? FROM "
            "(SELECT subscriber_id FROM (SELECT subscriber_id FROM pending UNION ALL "
            "SELECT subscriber_id FROM due) AS picked ORDER BY subscriber_id LIMIT ?) p "
            "WHERE d.issue = ? AND d.subscriber_id = p.subscriber_id "
            "RETURNING d.subscriber_id, d.attempts) "
            "SELECT c.subscriber_id, s.email, s.name, c.attempts, s.language FROM claimed c "
            "JOIN subscribers s ON s.id = c.subscriber_id ORDER BY c.subscriber_id"
        )
        args = (
            issue,
            *((after, after) if after else ()),
            limit,
            issue,
            now,
            limit,
            holder,
            limit,
            issue,
        )
        db = self.db
        try:
            if isinstance(db, PgConnection):
                rows = with_wait(self.path, self.wait, lambda: db.unsynced(sql, args))
            else:
                rows = with_wait(self.path, self.wait, lambda: db.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def claimers(self, issue: str) -> set[str]:
        """The senders holding deliveries of ``issue``."""
        return {
            str(r[0])
            for r in self.query(
                "SELECT DISTINCT claimed_by FROM deliveries WHERE issue = ? AND claimed_by != ''",
                (issue,),
            )
        }

    def claimed_elsewhere(self, issue: str, holder: str) -> int:
        """Deliveries of ``issue`` other senders hold (not yet recorded)."""
        return int(
            self.query(
                "SELECT count(*) FROM deliveries WHERE issue = ? AND claimed_by != '' "
                "AND claimed_by != ?",
                (issue, holder),
            )[0][0]
        )

    def unclaimed(self, issue: str) -> int:
        """Pending deliveries of ``issue`` to active subscribers that nobody holds
        (some a stopped sender held)."""
        return int(
            self.query(
                "SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.issue = ? AND d.claimed_by = '' AND d.state = 'pending' "
                "AND s.status = 'active'",
                (issue,),
            )[0][0]
        )

    def release_claims(self, issue: str, holder: str) -> int:
        """What ``holder`` claimed and did not start goes back to everyone."""
        with self.transaction() as db:
            return db.execute(
                "UPDATE deliveries SET claimed_by = '' WHERE issue = ? AND claimed_by = ? "
                "AND state != 'sending'",
                (issue, holder),
            ).rowcount

    def reap(self, issue: str, holder: str) -> int:
        """A sender that is gone: what it had in flight is in doubt, what it had
        claimed goes back to everyone, its lease is dropped. Returns how many
        messages became in doubt."""
        with self.transaction() as db:
            doubtful = db.execute(
                "UPDATE deliveries SET state = 'in_doubt', claimed_by = '', updated_at = ?, "
                "reply = 'its sender stopped while this message was in flight' "
                "WHERE issue = ? AND claimed_by = ? AND state = 'sending'",
                (now_iso(), issue, holder),
            ).rowcount
            db.execute(
                "UPDATE deliveries SET claimed_by = '' WHERE issue = ? AND claimed_by = ?",
                (issue, holder),
            )
            db.execute("DELETE FROM leases WHERE holder = ? AND name LIKE 'sender %'", (holder,))
            return int(doubtful)

    def senders(self) -> list[Lease]:
        """The leases of senders that share sends (see ``send.lock``)."""
        return [
            Lease(*r)
            for r in self.query(
                "SELECT name, holder, host, pid, since, expires FROM leases "
                "WHERE name LIKE 'sender %' ORDER BY since"
            )
        ]

    def last_event(self) -> int:
        """The newest status change's id (see ``left_since``)."""
        rows = self.query("SELECT max(id) FROM events")
        return int(rows[0][0] or 0)

    def left_since(self, event_id: int) -> tuple[int, set[int]]:
        """Subscribers who stopped being active (unsubscribed, bounced, complained)
        after event ``event_id``, and the newest event's id: cheap (the events'
        own key), so a running send can ask every half second."""
        rows = self.query(
            "SELECT id, subscriber_id, kind FROM events WHERE id > ? ORDER BY id", (event_id,)
        )
        left: set[int] = set()
        for _, sid, kind in rows:
            if sid is None:
                continue
            if kind == "active":
                left.discard(int(sid))
            elif kind in ("unsubscribed", "bounced", "complained"):
                left.add(int(sid))
        return (int(rows[-1][0]) if rows else event_id), left

    def drop_inactive(self, issue: str) -> int:
        """Forget unsent deliveries to people no longer active (unsubscribed or
        bounced since the send began): they must not be sent, nor wait forever."""
        with self.transaction() as db:
            return db.execute(
                "DELETE FROM deliveries WHERE issue = ? AND state IN ('pending', 'deferred') "
                "AND subscriber_id IN (SELECT id FROM subscribers WHERE status != 'active')",
                (issue,),
            ).rowcount

    def count_waiting(self, issue: str) -> int:
        """Unsent deliveries (pending, deferred) to active subscribers."""
        return int(
            self.query(
                "SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.issue = ? AND d.state IN ('pending', 'deferred') AND s.status = 'active'",
                (issue,),
            )[0][0]
        )

    def unsent(self, issue: str, list_name: str | None, batch: int = 1000) -> Iterator[Delivery]:
        """The audience of an issue still to be mailed, in id order: active subscribers
        (of the list) with no delivery yet or one waiting (pending, deferred)."""
        audience, args = self.audience_sql(list_name, waiting_too=True)
        after = 0
        while True:
            rows = self.query(
                "SELECT s.id, s.email, s.name, s.language "
                + audience
                + " AND s.id > ? ORDER BY s.id LIMIT ?",
                [issue, *args, after, batch],
            )
            yield from (Delivery(r[0], r[1], r[2], 0, r[3]) for r in rows)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def sent_issues(self) -> set[str]:
        """Issues at least one message of which was sent."""
        return {
            r[0] for r in self.query("SELECT DISTINCT issue FROM deliveries WHERE state = 'sent'")
        }

    def requeue(self, issue: str, subscriber_ids: Iterable[int]) -> int:
        """Back to 'not yet sent': messages refused for the relay's own reasons."""
        with self.transaction() as db:
            return sum(
                db.execute(
                    "UPDATE deliveries SET state = 'pending' WHERE issue = ? AND subscriber_id = ? "
                    "AND state = 'failed'",
                    (issue, sid),
                ).rowcount
                for sid in subscriber_ids
            )

    def requeue_in_doubt(self, issue: str) -> int:
        with self.transaction() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'pending' WHERE issue = ? AND state = 'in_doubt'",
                (issue,),
            ).rowcount

    def due(self, issue: str, after_id: int, now: float, limit: int) -> list[Delivery]:
        """Pending or due deferred deliveries after ``after_id``, in id order."""
        rows = self.query(
            "SELECT d.subscriber_id, s.email, s.name, d.attempts, s.language FROM deliveries d "
            "JOIN subscribers s ON s.id = d.subscriber_id WHERE d.issue = ? AND "
            "d.subscriber_id > ? AND (d.state = 'pending' OR (d.state = 'deferred' AND "
            "d.next_attempt_at <= ?)) AND s.status = 'active' ORDER BY d.subscriber_id LIMIT ?",
            (issue, after_id, now, limit),
        )
        return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def next_deferred_at(self, issue: str) -> float | None:
        rows = self.query(
            "SELECT min(next_attempt_at) FROM deliveries WHERE issue = ? AND state = 'deferred'",
            (issue,),
        )
        return None if rows[0][0] is None else float(rows[0][0])

    def audience_languages(
        self, issue: str, list_name: str | None, limit: int | None = None
    ) -> dict[str, int]:
        """The audience still to be mailed (new and waiting; the first ``limit``
        of it) by subscriber language."""
        audience, args = self.audience_sql(list_name, waiting_too=True)
        tail = " ORDER BY s.id LIMIT ?" if limit is not None else ""
        return {
            language: n
            for language, n in self.query(
                "SELECT language, count(*) FROM (SELECT s.language AS language "
                + audience
                + tail
                + ") AS audience GROUP BY language",
                [issue, *args, *([limit] if limit is not None else [])],
            )
        }

    def sent_languages(self, issue: str) -> dict[str, int]:
        """Messages of ``issue`` sent, by subscriber language."""
        return {
            language: n
            for language, n in self.query(
                "SELECT s.language, count(*) FROM deliveries d JOIN subscribers s "
                "ON s.id = d.subscriber_id WHERE d.issue = ? AND d.state = 'sent' "
                "GROUP BY s.language",
                (issue,),
            )
        }

    def counts_by_relay(self, issue: str) -> dict[str, dict[str, int]]:
        """Messages by the relay they went to, then by state (those never started
        on a relay are left out)."""
        out: dict[str, dict[str, int]] = {}
        for relay, state, n in self.query(
            "SELECT relay, state, count(*) FROM deliveries WHERE issue = ? AND relay != '' "
            "GROUP BY relay, state",
            (issue,),
        ):
            out.setdefault(str(relay), {})[str(state)] = int(n)
        return out

    def counts(self, issue: str) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self.query(
            "SELECT state, count(*) FROM deliveries WHERE issue = ? GROUP BY state", (issue,)
        ):
            counts[state] = n
        return counts

    def problems(
        self, issue: str, states: tuple[str, ...], limit: int = 50
    ) -> list[tuple[str, str, str, int]]:
        marks = ",".join("?" * len(states))
        return [
            (r[0], r[1], r[2], r[3])
            for r in self.query(
                "SELECT s.email, d.state, d.reply, d.attempts FROM deliveries d JOIN subscribers s "
                f"ON s.id = d.subscriber_id WHERE d.issue = ? AND d.state IN ({marks}) "
                "ORDER BY d.updated_at, s.email LIMIT ?",
                (issue, *states, limit),
            )
        ]

    # -- leases -----------------------------------------------------------

    def lease(self, name: str) -> Lease | None:
        rows = self.query(
            "SELECT name, holder, host, pid, since, expires FROM leases WHERE name = ?", (name,)
        )
        return Lease(*rows[0]) if rows else None

    def take_lease(
        self,
        name: str,
        holder: str,
        host: str,
        pid: int,
        ttl: float,
        may_take: Callable[[Lease], bool],
    ) -> Lease | None:
        """Take lease ``name`` for ``ttl`` seconds in one transaction. Returns None if
        taken, or the current holder's lease when it is still held: unexpired and
        not one that ``may_take`` says is abandoned (its process is gone)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT name, holder, host, pid, since, expires FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:
                current = Lease(*row)
                if (
                    current.holder != holder
                    and current.expires > time.time()
                    and not may_take(current)
                ):
                    return current
            db.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, host = excluded.host, pid = excluded.pid, "
                "since = excluded.since, expires = excluded.expires",
                (name, holder, host, pid, now_iso(), time.time() + ttl),
            )
        return None

    def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Extend our lease; False if it is no longer ours (taken over after expiring)."""
        with self.transaction() as db:
            return (
                db.execute(
                    "UPDATE leases SET expires = ? WHERE name = ? AND holder = ?",
                    (time.time() + ttl, name, holder),
                ).rowcount
                == 1
            )

    def release_lease(self, name: str, holder: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
