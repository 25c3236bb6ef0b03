"""Sign-ups and consent in the database: the ``signups`` table.

A row is written when a confirmation mail is due (a sign-up that passed the
checks against bots), and it is the proof of consent once confirmed: when,
from which address and browser, on which page, the exact consent text and
lists shown, and when and from where the confirmation came. A change made on
the preferences page is a row of its own (kind ``preferences``). Rows stay
after an unsubscribe; ``subscribers remove`` deletes them with the subscriber.

The table is also the queue of confirmation mails (``mail_state``): a server
killed between recording a sign-up and mailing it sends the mail when it
starts again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from composer.store.connection import Connection
from composer.store.database import Store, Subscriber, now_iso


@dataclass(frozen=True)
class Signup:
    id: int
    email: str
    name: str
    language: str
    lists: list[str]
    created: float  # time.time() of the request
    confirmed_at: str | None
    subscriber_id: int | None


@dataclass(frozen=True)
class Request:
    """What one sign-up (or preferences change) said, and where it came from."""

    email: str
    name: str
    language: str
    lists: Sequence[str]
    lists_shown: Sequence[str]
    consent_text: str
    ip: str
    user_agent: str
    page: str


CONSENT_COLUMNS = (
    "email",
    "kind",
    "requested_at",
    "ip",
    "user_agent",
    "page",
    "consent_text",
    "lists_shown",
    "lists_chosen",
    "language",
    "name",
    "confirmed_at",
    "confirmed_ip",
    "subscriber_status",
)

_SIGNUP = (
    "SELECT id, email, name, language, lists, created, confirmed_at, subscriber_id FROM signups"
)


def _signup(row: tuple[object, ...]) -> Signup:
    return Signup(
        int(row[0]),  # type: ignore[call-overload]
        str(row[1]),
        str(row[2]),
        str(row[3]),
        list(json.loads(str(row[4]))),
        float(row[5]),  # type: ignore[arg-type]
        None if row[6] is None else str(row[6]),
        None if row[7] is None else int(row[7]),  # type: ignore[call-overload]
    )


class Signups:
    """Sign-ups, confirmations and preference changes on one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def request(
        self, r: Request, per_ip_hour: int, address_minutes: float, now: float | None = None
    ) -> int | None:
        """Record a sign-up and queue its confirmation mail, unless a limit says
        no: ``per_ip_hour`` mails an hour from one client address, one per email
        address every ``address_minutes``. The id, or None when limited (nothing
        written). Checked and written in one transaction: two requests at once
        cannot both pass."""
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            from_ip = db.execute(
                "SELECT count(*) FROM signups WHERE kind = 'signup' AND ip = ? AND created > ?",
                (r.ip, now - 3600),
            ).fetchone()[0]
            if from_ip >= per_ip_hour:
                return None
            recent = db.execute(
                "SELECT 1 FROM signups WHERE kind = 'signup' AND email = ? AND created > ?",
                (r.email, now - address_minutes * 60),
            ).fetchone()
            if recent is not None:
                return None
            cur = db.execute(
                "INSERT INTO signups (kind, email, name, language, lists, lists_shown, "
                "consent_text, ip, user_agent, page, created_at, created) "
                "VALUES ('signup', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (*self._values(r), now_iso(), now),
            )
            return int(cur.fetchone()[0])

    @staticmethod
    def _values(r: Request) -> tuple[str, ...]:
        return (
            r.email,
            r.name,
            r.language,
            json.dumps(list(r.lists), ensure_ascii=False),
            json.dumps(list(r.lists_shown), ensure_ascii=False),
            r.consent_text,
            r.ip,
            r.user_agent[:400],
            r.page[:400],
        )

    def get(self, signup_id: int) -> Signup | None:
        rows = self.store.query(_SIGNUP + " WHERE id = ? AND kind = 'signup'", (signup_id,))
        return _signup(rows[0]) if rows else None

    # -- the queue of confirmation mails ------------------------------------

    def queued(self, limit: int = 50, max_age: float = 7 * 86400) -> list[Signup]:
        """Sign-ups whose confirmation mail is still to go, oldest first (those
        older than a link's life are not worth mailing any more)."""
        rows = self.store.query(
            _SIGNUP + " WHERE mail_state = 'queued' AND created > ? ORDER BY id LIMIT ?",
            (time.time() - max_age, limit),
        )
        return [_signup(r) for r in rows]

    def attempts(self, signup_id: int) -> int:
        """How many times its confirmation mail was tried."""
        rows = self.store.query("SELECT mail_attempts FROM signups WHERE id = ?", (signup_id,))
        return int(rows[0][0]) if rows else 0

    def mailed(self, signup_id: int, state: str, reply: str) -> None:
        """The relay's answer: ``sent`` (its 250, now), ``queued`` again (try
        later) or ``failed``."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE signups SET mail_state = ?, mail_reply = ?, "
                "mail_attempts = mail_attempts + 1, "
                "mailed = CASE WHEN ? = 'sent' THEN ? ELSE mailed END WHERE id = ?",
                (state, reply[:300], state, time.time(), signup_id),
            )

    # -- confirmation ----------------------------------------------------------

    def confirm(self, signup_id: int, ip: str) -> tuple[Subscriber, bool] | None:
        """Make the sign-up's address an active subscriber of the lists it chose
        (an unsubscribed, bounced or complained address too: this is the path
        back). ``(subscriber, True)`` the first time, ``(subscriber, False)`` when
        already confirmed (nothing changes); None for an unknown sign-up."""
        with self.store.transaction() as db:
            row = db.execute(_SIGNUP + " WHERE id = ? AND kind = 'signup'", (signup_id,)).fetchone()
            if row is None:
                return None
            signup = _signup(row)
            first = signup.confirmed_at is None
            if first:
                sid = self._activate(db, signup)
                db.execute(
                    "UPDATE signups SET confirmed_at = ?, confirmed_ip = ?, subscriber_id = ? "
                    "WHERE id = ?",
                    (now_iso(), ip, sid, signup_id),
                )
            else:
                sid = signup.subscriber_id or 0
        subscriber = self.store.subscriber_by_id(sid)
        if subscriber is None:  # removed since it was confirmed
            return None
        return subscriber, first

    def _activate(self, db: Connection, signup: Signup) -> int:
        stamp = now_iso()
        row = db.execute(
            "SELECT id, status FROM subscribers WHERE email = ?", (signup.email,)
        ).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO subscribers (email, name, status, language, created_at, "
                "updated_at, status_changed_at) VALUES (?, ?, 'active', ?, ?, ?, ?) RETURNING id",
                (signup.email, signup.name, signup.language, stamp, stamp, stamp),
            )
            sid = int(cur.fetchone()[0])
            db.execute(
                "INSERT INTO events (subscriber_id, kind, detail, at) VALUES (?, ?, ?, ?)",
                (sid, "active", f"confirmed sign-up {signup.id}", stamp),
            )
        else:
            sid = int(row[0])
            db.execute(
                "UPDATE subscribers SET name = CASE WHEN ? != '' THEN ? ELSE name END, "
                "language = CASE WHEN ? != '' THEN ? ELSE language END, updated_at = ? "
                "WHERE id = ?",
                (signup.name, signup.name, signup.language, signup.language, stamp, sid),
            )
            if row[1] != "active":
                self.store._set_status(db, sid, "active", f"confirmed sign-up {signup.id}")
        for name in signup.lists:
            db.execute(
                "INSERT OR IGNORE INTO memberships VALUES (?, ?)",
                (self.store.list_id(db, name), sid),
            )
        return sid

    # -- preferences -----------------------------------------------------------

    def change(self, subscriber_id: int, r: Request) -> Subscriber | None:
        """Apply a preferences page's form: name, language, and membership of the
        lists it showed (lists it did not show are left as they are); recorded
        like a consent."""
        stamp = now_iso()
        with self.store.transaction() as db:
            if (
                db.execute("SELECT 1 FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
                is None
            ):
                return None
            db.execute(
                "UPDATE subscribers SET name = ?, language = ?, updated_at = ? WHERE id = ?",
                (r.name, r.language, stamp, subscriber_id),
            )
            for name in r.lists_shown:
                list_id = self.store.list_id(db, name)
                if name in r.lists:
                    db.execute(
                        "INSERT OR IGNORE INTO memberships VALUES (?, ?)", (list_id, subscriber_id)
                    )
                else:
                    db.execute(
                        "DELETE FROM memberships WHERE list_id = ? AND subscriber_id = ?",
                        (list_id, subscriber_id),
                    )
            db.execute(
                "INSERT INTO signups (kind, email, name, language, lists, lists_shown, "
                "consent_text, ip, user_agent, page, created_at, created, mail_state, "
                "confirmed_at, confirmed_ip, subscriber_id) "
                "VALUES ('preferences', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'none', ?, ?, ?)",
                (*self._values(r), stamp, time.time(), stamp, r.ip, subscriber_id),
            )
        return self.store.subscriber_by_id(subscriber_id)

    # -- the record ------------------------------------------------------------

    def records(self) -> Iterator[tuple[str, ...]]:
        """Every consent record, oldest first, as CONSENT_COLUMNS."""
        rows = self.store.query(
            "SELECT g.email, g.kind, g.created_at, g.ip, g.user_agent, g.page, g.consent_text, "
            "g.lists_shown, g.lists, g.language, g.name, coalesce(g.confirmed_at, ''), "
            "g.confirmed_ip, coalesce(s.status, CASE WHEN g.confirmed_at IS NULL "
            "THEN 'pending' ELSE '' END) "
            "FROM signups g LEFT JOIN subscribers s ON s.id = g.subscriber_id ORDER BY g.id"
        )
        for row in rows:
            yield tuple(
                ", ".join(json.loads(v)) if i in (7, 8) else str(v) for i, v in enumerate(row)
            )

    def forget(self, email: str) -> int:
        """Delete every record of ``email`` (with ``subscribers remove``)."""
        with self.store.transaction() as db:
            return db.execute("DELETE FROM signups WHERE email = ?", (email,)).rowcount
