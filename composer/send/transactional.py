"""Confirmation and welcome mails, sent at once, never behind a bulk send.

``serve`` runs one ``Mailer``: a thread with a connection of its own to the
relay (``TRANSACTIONAL_SMTP_HOST`` and friends, else the bulk relay's
settings; a bulk send's connections are never shared), kept open between
mails and opened again when the relay has closed it. Its queue is the
database (``signups.mail_state``): a sign-up recorded and then lost to a crash
is mailed when the server starts again. A request only records the sign-up
and wakes the thread, so it answers in the same time whatever the mail does.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr

from composer.audience.tokens import sign, sign_claim
from composer.config import Settings
from composer.errors import ComposerError
from composer.issue.model import Newsletter
from composer.mail.message import _dot_stuff
from composer.mail.notice import build_notice
from composer.mail.transport import Connection, Result, Transport, make_transport, run_blocking
from composer.render.notice import Notice, Notices
from composer.send.signing import dkim_signer
from composer.store.database import Store
from composer.store.signups import Signup, Signups

log = logging.getLogger("composer.transactional")

CONFIRM = "confirm"
MAX_ATTEMPTS = 5


def confirm_link(settings: Settings, signup_id: int, now: float | None = None) -> str:
    """The signed confirmation link of a sign-up, valid for ``confirm_days``."""
    expires = int((time.time() if now is None else now) + settings.confirm_days * 86400)
    token = sign_claim(settings.secret_key.get(), CONFIRM, str(signup_id), str(expires))
    return f"{settings.base_url}/confirm/{token}"


def preferences_link(settings: Settings, subscriber_id: int) -> str:
    return f"{settings.base_url}/preferences/{sign(settings.secret_key.get(), subscriber_id, '')}"


@dataclass(frozen=True)
class Welcome:
    email: str
    name: str
    language: str
    subscriber_id: int


class Mailer:
    """The thread that sends sign-up mails (see the module's docstring)."""

    def __init__(
        self, settings: Settings, newsletter: Newsletter, choose: Callable[[str], str]
    ) -> None:
        """``choose(language) -> edition language`` picks the notice's language."""
        self.settings = settings
        self.relay = settings.transactional()
        self.newsletter = newsletter
        self.choose = choose
        self.notices = Notices(newsletter, settings.home, round(settings.confirm_days))
        self.signer = dkim_signer(settings)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._welcomes: queue.SimpleQueue[Welcome] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="transactional-mail", daemon=True)
        self._transport: Transport | None = None
        self._conn: Connection | None = None
        self._retry_at: dict[int, float] = {}  # signup id -> when to try again (monotonic)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """A sign-up was queued: send it now."""
        self._wake.set()

    def welcome(self, w: Welcome) -> None:
        self._welcomes.put(w)
        self._wake.set()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        store = Store(self.settings.database, wait=30.0)
        signups = Signups(store)
        try:
            while not self._stop.is_set():
                self._wake.wait(timeout=self._next_wait())
                self._wake.clear()
                try:
                    self._drain(signups)
                except ComposerError as exc:
                    log.error("sign-up mail: %s", exc)
                    self._close()
                    self._stop.wait(2.0)
                    self._wake.set()
                except Exception:  # a bug must not end sign-up mail for good
                    log.exception("sign-up mail failed; trying again")
                    self._close()
                    self._stop.wait(5.0)
                    self._wake.set()
        finally:
            self._close()
            store.close()

    def _next_wait(self) -> float:
        """Until the next deferred mail is due (at most 30 s: a sign-up another
        process recorded is picked up then)."""
        if not self._retry_at:
            return 30.0
        return max(0.05, min(30.0, min(self._retry_at.values()) - time.monotonic()))

    def _drain(self, signups: Signups) -> None:
        max_age = self.settings.confirm_days * 86400
        while not self._stop.is_set():
            now = time.monotonic()
            batch = [
                s
                for s in signups.queued(limit=200, max_age=max_age)
                if self._retry_at.get(s.id, 0.0) <= now
            ][:20]
            welcomes: list[Welcome] = []
            with contextlib.suppress(queue.Empty):
                while len(welcomes) < 20:
                    welcomes.append(self._welcomes.get_nowait())
            if not batch and not welcomes:
                return
            for s in batch:
                result = self._send_confirmation(s)
                if result.kind == "sent":
                    signups.mailed(s.id, "sent", result.reply)
                    self._retry_at.pop(s.id, None)
                else:
                    attempts = signups.attempts(s.id) + 1
                    state = (
                        "failed"
                        if result.kind == "failed" or attempts >= MAX_ATTEMPTS
                        else "queued"
                    )
                    signups.mailed(s.id, state, result.reply)
                    log.warning("confirmation mail to %s: %s (%s)", s.email, result.reply, state)
                    if state == "queued":  # the others go on meanwhile
                        self._retry_at[s.id] = time.monotonic() + min(60.0, 2.0**attempts)
                    else:
                        self._retry_at.pop(s.id, None)
            for w in welcomes:
                result = self._send_welcome(w)
                if result.kind != "sent":
                    log.warning("welcome mail to %s: %s", w.email, result.reply)

    def _send_confirmation(self, s: Signup) -> Result:
        notice = self.notices.get("confirm", self._language(s.language))
        link = confirm_link(self.settings, s.id, s.created)
        return self._send(s.email, self._message(notice, s.email, s.name, link))

    def _send_welcome(self, w: Welcome) -> Result:
        notice = self.notices.get("welcome", self._language(w.language))
        link = preferences_link(self.settings, w.subscriber_id)
        return self._send(w.email, self._message(notice, w.email, w.name, link))

    def _language(self, language: str) -> str:
        return self.choose(language)

    def _message(self, notice: Notice, email: str, name: str, link: str) -> bytes:
        return build_notice(
            notice,
            from_address=self.settings.from_address,
            title=self.newsletter.title,
            reply_to=self.newsletter.reply_to,
            to=email,
            name=name,
            link=link,
            signer=self.signer,
        )

    def _send(self, recipient: str, message: bytes) -> Result:
        """One message on the kept connection; a connection the relay has closed
        meanwhile is opened again and the message sent once more."""
        sender = self.settings.bounce_address or _address(self.settings.from_address)
        for attempt in (1, 2):
            conn = self._connection()
            chunks = [_dot_stuff(message), b".\r\n"] if conn.wire else [message]
            result = run_blocking(conn, conn.transaction(sender, recipient, chunks))
            if result.reconnect or result.kind == "retry":
                self._close()
            if result.kind != "retry" or attempt == 2:
                return result
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._transport is None:
                self._transport = make_transport(self.relay)
            self._conn = self._transport.connect()
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _address(from_address: str) -> str:
    return parseaddr(from_address)[1]
