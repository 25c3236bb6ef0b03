"""The database schema, as named steps applied in order and recorded by number.

Append-only: a step that has shipped is never edited; a change is a new step.
Each step is a list of statements (no SQL text split on ``;``), applied in one
transaction together with its row in ``schema_migrations``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


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

# Version N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[Migration, ...] = (
    CREATE_SUBSCRIBERS_LISTS_DELIVERIES,
    CREATE_EVENTS,
    CREATE_LEASES,
    CREATE_BOUNCES,
    CREATE_SIGNUPS,
    ADD_DELIVERY_RELAY,
    ADD_DELIVERY_CLAIMS,
)
