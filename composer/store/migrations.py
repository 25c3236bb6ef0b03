"""The database schema, as named steps applied in order and recorded by number.

Append-only: a step that has shipped is never edited; a change is a new step.
Each step is a list of statements (no SQL text split on ``;``), applied in one
transaction together with its row in ``schema_migrations``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]
    # A step only SQLite needs, run after the statements in the same transaction.
    sqlite: Callable[[sqlite3.Connection], None] | None = None


CREATE_SUBSCRIBERS_LISTS_DELIVERIES = Migration(
    "subscribers, lists, sends and deliveries",
    (
        """CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
            language TEXT NOT NULL DEFAULT '',
            attributes TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            status_changed_at TEXT
        )""",
        "CREATE INDEX subscribers_status ON subscribers (status, id)",
        "CREATE TABLE lists (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """CREATE TABLE memberships (
            list_id INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            PRIMARY KEY (list_id, subscriber_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX memberships_subscriber ON memberships (subscriber_id)",
        """CREATE TABLE sends (
            issue TEXT PRIMARY KEY,
            digest TEXT NOT NULL,
            subject TEXT NOT NULL,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE deliveries (
            issue TEXT NOT NULL REFERENCES sends (issue),
            subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed',
                                 'in_doubt')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            reply TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (issue, subscriber_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX deliveries_state ON deliveries (issue, state, subscriber_id)",
    ),
)

CREATE_EVENTS = Migration(
    "an audit trail of status changes (unsubscribes, bounces)",
    (
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        )""",
    ),
)

CREATE_LEASES = Migration(
    "leases: one send at a time per database, whatever path reaches it",
    (
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            since TEXT NOT NULL,
            expires REAL NOT NULL
        )""",
    ),
)

CREATE_BOUNCES = Migration(
    "bounces: every returned message applied, once",
    (
        """CREATE TABLE bounces (
            id INTEGER PRIMARY KEY,
            message TEXT NOT NULL,
            recipient TEXT NOT NULL DEFAULT '',
            subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
            issue TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'policy', 'complaint',
                                               'autoreply', 'unknown')),
            status TEXT NOT NULL DEFAULT '',
            diagnostic TEXT NOT NULL DEFAULT '',
            bounced_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            UNIQUE (message, recipient)
        )""",
        "CREATE INDEX bounces_issue ON bounces (issue, kind)",
        "CREATE INDEX bounces_subscriber ON bounces (subscriber_id, bounced_at)",
    ),
)

CREATE_SIGNUPS = Migration(
    "sign-ups and consent: who asked, when, from where, shown what; confirmed when",
    (
        """CREATE TABLE signups (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'signup' CHECK (kind IN ('signup', 'preferences')),
            email TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT '',
            lists TEXT NOT NULL DEFAULT '[]',
            lists_shown TEXT NOT NULL DEFAULT '[]',
            consent_text TEXT NOT NULL DEFAULT '',
            ip TEXT NOT NULL DEFAULT '',
            user_agent TEXT NOT NULL DEFAULT '',
            page TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            created REAL NOT NULL,
            mail_state TEXT NOT NULL DEFAULT 'queued'
                CHECK (mail_state IN ('none', 'queued', 'sent', 'failed')),
            mail_attempts INTEGER NOT NULL DEFAULT 0,
            mailed REAL,
            mail_reply TEXT NOT NULL DEFAULT '',
            confirmed_at TEXT,
            confirmed_ip TEXT NOT NULL DEFAULT '',
            subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE CASCADE
        )""",
        "CREATE INDEX signups_email ON signups (email, created)",
        "CREATE INDEX signups_ip ON signups (ip, created)",
        "CREATE INDEX signups_mail ON signups (mail_state, id)",
        "CREATE INDEX signups_subscriber ON signups (subscriber_id)",
    ),
)

ADD_DELIVERY_RELAY = Migration(
    "deliveries: the relay each message went to (several relays for one send)",
    ("ALTER TABLE deliveries ADD COLUMN relay TEXT NOT NULL DEFAULT ''",),
)

ADD_DELIVERY_CLAIMS = Migration(
    "deliveries: which sender claimed each (several senders share one send)",
    (
        "ALTER TABLE deliveries ADD COLUMN claimed_by TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX deliveries_claimed ON deliveries (issue, claimed_by) WHERE claimed_by != ''",
    ),
)

_IN_CHECK_RE = re.compile(r"CHECK \((\w+) IN \(([^()]*)\)\)")


_LITERAL_RE = re.compile(r"\s*('(?:[^']|'')*')\s*(?:,|$)")


def _as_comparisons(m: re.Match[str]) -> str:
    """One CHECK's IN list of string literals as comparisons; anything else as it was."""
    column, listed = m.group(1), m.group(2)
    values, at = [], 0
    while at < len(listed):
        literal = _LITERAL_RE.match(listed, at)
        if literal is None:
            return m.group(0)
        values.append(literal.group(1))
        at = literal.end()
    return "CHECK (" + " OR ".join(f"{column} = {v}" for v in values) + ")"


def checks_as_comparisons(db: sqlite3.Connection) -> None:
    """Rewrite each ``CHECK (x IN ('a', 'b', ...))`` as ``x = 'a' OR x = 'b' ...``.

    SQLite builds an ephemeral table for a constant IN list on every run of a
    statement, so a CHECK written that way cost 2 us per inserted or updated
    row (half of an update of ``deliveries``, a third of an import's insert of
    a subscriber). The comparisons accept exactly the same values, so the rows
    on disk are untouched: this is the change SQLite's documentation allows
    through ``writable_schema`` (https://sqlite.org/lang_altertable.html,
    "making other kinds of table schema changes"), with the schema version
    bumped so that every open connection reloads the schema."""
    tables = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK (% IN (%'"
    ).fetchall()
    if not tables:
        return
    version = int(db.execute("PRAGMA schema_version").fetchone()[0])
    db.execute("PRAGMA writable_schema = ON")
    try:
        for name, sql in tables:
            db.execute(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                (_IN_CHECK_RE.sub(_as_comparisons, sql), name),
            )
        db.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the new schema parses


CHECKS_AS_COMPARISONS = Migration(
    "SQLite: CHECK constraints as comparisons (a constant IN list costs 2 us a row)",
    (),
    sqlite=checks_as_comparisons,
)

# Version N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[Migration, ...] = (
    CREATE_SUBSCRIBERS_LISTS_DELIVERIES,
    CREATE_EVENTS,
    CREATE_LEASES,
    CREATE_BOUNCES,
    CREATE_SIGNUPS,
    ADD_DELIVERY_RELAY,
    ADD_DELIVERY_CLAIMS,
    CHECKS_AS_COMPARISONS,
)
