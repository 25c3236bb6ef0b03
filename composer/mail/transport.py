"""Transports: SMTP and a local Maildir outbox, behind one small interface.

The only module that imports smtplib. smtplib does what it does well
(connecting, TLS with a verifying context, EHLO, AUTH, reading replies); the
mail transaction itself is written here so that it can use PIPELINING
(RFC 2920: MAIL, RCPT and DATA in one write) and send a body that was
dot-stuffed once per issue, as chunks, without copying it per message.

Every network call has a timeout; STARTTLS is never skipped when asked for;
certificates are verified (``SMTP_CA_FILE`` adds a private CA). Errors become
``TransportError``/``AuthError`` naming host:port; the password never appears.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from composer.config import Settings
from composer.errors import AuthError, ConnectError, TransportError
from composer.mail.replies import classify

log = logging.getLogger("composer.transport")


@dataclass(frozen=True)
class Result:
    """What happened to one message.

    kind: "sent"; "deferred" (4xx: try later); "failed" (5xx); "retry" (not
    delivered, the connection broke or closed: reconnect and send again);
    "in_doubt" (the connection broke after the end of DATA, before the reply).
    """

    kind: str
    reply: str
    bounce: bool = False  # the recipient's address does not exist: bounce the subscriber
    reconnect: bool = False  # this connection cannot be used again
    stop: bool = False  # the relay refuses us, not this message: stop, send it later
    policy: bool = False  # a refusal on policy grounds (counted for repeated refusals)


# Called once a message is complete but for its final "." (or its rename into
# the outbox): the moment from which it may be delivered. The engine records
# the message as in flight there; if that raises, the message is abandoned.
Commit = Callable[[], None]


class Connection(Protocol):
    wire: bool  # whether send() takes the SMTP DATA form (dot-stuffed, final ".")

    def send(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        commit: Commit | None = None,
        ahead: tuple[str, str] | None = None,
    ) -> Result: ...

    def close(self) -> None: ...


class Transport(Protocol):
    label: str
    wire: bool

    def connect(self) -> Connection: ...


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"[:500]


class SMTPTransport:
    """Connections to one SMTP server, as configured in the settings."""

    wire = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.where = f"{self.host}:{self.port}"
        self.label = f"SMTP {self.where} ({settings.smtp_security})"
        self._context: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(
                    cafile=self.settings.smtp_ca_file or None
                )
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    f"SMTP_CA_FILE={self.settings.smtp_ca_file}: cannot load: {exc}"
                ) from None
        return self._context

    def connect(self) -> SMTPConnection:
        return SMTPConnection(self)


class SMTPConnection:
    wire = True

    def __init__(self, transport: SMTPTransport) -> None:
        self.t = transport
        s = transport.settings
        helo = s.mail_domain
        try:
            if s.smtp_security == "ssl":
                self.smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    transport.host,
                    transport.port,
                    local_hostname=helo,
                    timeout=s.smtp_timeout,
                    context=transport.tls_context(),
                )
            else:
                self.smtp = smtplib.SMTP(
                    transport.host, transport.port, local_hostname=helo, timeout=s.smtp_timeout
                )
            self.smtp.ehlo()
            if s.smtp_security == "starttls":
                if not self.smtp.has_extn("starttls"):
                    self._abandon()
                    raise TransportError(
                        f"{transport.where} does not offer STARTTLS; refusing to send in plain "
                        "text (use SMTP_SECURITY=ssl, or none only for a relay on this machine)"
                    )
                self.smtp.starttls(context=transport.tls_context())
                self.smtp.ehlo()
            if s.smtp_username:
                self._login(s.smtp_username, s.smtp_password.get())
        except TransportError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon()
            raise AuthError(
                f"{transport.where} refused the login of SMTP_USERNAME={s.smtp_username!r} "
                f"({_reply_text(exc.smtp_code, exc.smtp_error)}); check SMTP_USERNAME and "
                "SMTP_PASSWORD"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self._abandon()
            raise TransportError(
                f"{transport.where}: the server's certificate is not trusted "
                f"({exc.verify_message}); fix the server, or set SMTP_CA_FILE to its CA"
            ) from None
        except smtplib.SMTPConnectError as exc:
            raise ConnectError(
                f"{transport.where} refused the session: "
                f"{_reply_text(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._abandon()
            raise TransportError(
                f"{transport.where}: {_reply_text(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._abandon()
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                raise ConnectError(
                    f"{transport.where}: no answer within {s.smtp_timeout:g} s"
                ) from None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConnectError(f"{transport.where}: cannot connect: {reason}") from None
        self.pipelining = self.smtp.has_extn("pipelining")
        if self.smtp.sock is not None:
            # Our writes are whole messages and command groups, never keystrokes:
            # Nagle's algorithm would hold a final "." back for an ACK, a round trip.
            with contextlib.suppress(OSError):
                self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ahead: tuple[str, str] | None = None  # a transaction written ahead
        self.plain_socket = not isinstance(self.smtp.sock, ssl.SSLSocket)
        log.debug(
            "connected to %s (pipelining=%s, tls=%s)",
            transport.where,
            self.pipelining,
            not self.plain_socket,
        )

    def _login(self, username: str, password: str) -> None:
        """One AUTH attempt with the best mechanism offered (PLAIN, else LOGIN):
        smtplib's ``login`` tries the next mechanism after a refusal, which makes a
        relay count two failed logins for one wrong password."""
        if not self.smtp.has_extn("auth"):
            self._abandon()
            raise TransportError(
                f"{self.t.where} does not offer AUTH (SMTP_USERNAME is set); "
                "is SMTP_SECURITY right?"
            )
        offered = self.smtp.esmtp_features.get("auth", "").upper().split()
        self.smtp.user, self.smtp.password = username, password
        if "PLAIN" in offered:
            code, reply = self.smtp.auth("PLAIN", self.smtp.auth_plain, initial_response_ok=True)
        elif "LOGIN" in offered:
            code, reply = self.smtp.auth("LOGIN", self.smtp.auth_login, initial_response_ok=True)
        else:
            self._abandon()
            raise TransportError(
                f"{self.t.where} offers AUTH {' '.join(offered) or '(none)'}, but neither "
                "PLAIN nor LOGIN; use a relay that does"
            )
        if code not in (235, 503):
            raise smtplib.SMTPAuthenticationError(code, reply)

    def _abandon(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self.smtp.close()

    # -- the transaction ---------------------------------------------------

    def _write(self, chunks: list[bytes]) -> None:
        sock = self.smtp.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        if not self.plain_socket:  # SSLSocket has no sendmsg
            sock.sendall(b"".join(chunks))
            return
        views = [memoryview(c) for c in chunks if c]
        while views:
            sent = sock.sendmsg(views[:512])
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if sent:
                views[0] = views[0][sent:]

    def _reply(self) -> tuple[int, str]:
        code, message = self.smtp.getreply()
        return code, _reply_text(code, message)

    def send(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        commit: Commit | None = None,
        ahead: tuple[str, str] | None = None,
    ) -> Result:
        """One mail transaction. ``chunks`` is the DATA in wire form, its last chunk
        the final ``.``; ``commit`` runs just before that chunk is written.
        ``ahead``: the envelope (sender, recipient) of the message this connection
        sends next, written with this one's final "."; the next ``send`` must be
        for it, or the connection closed (``close`` then drops it unsent)."""
        envelope = [f"MAIL FROM:<{sender}>\r\n".encode(), f"RCPT TO:<{recipient}>\r\n".encode()]
        sent_ahead, self.ahead = self.ahead, None
        try:
            if sent_ahead is not None:  # written with the previous message's final "."
                if sent_ahead != (sender, recipient):
                    raise OSError("the transaction written ahead was for someone else")
                mail, rcpt, data = self._reply(), self._reply(), self._reply()
            elif self.pipelining:
                self._write([*envelope, b"DATA\r\n"])
                mail, rcpt, data = self._reply(), self._reply(), self._reply()
            else:
                self._write(envelope[:1])
                mail = self._reply()
                rcpt = data = (503, "503 skipped")
                if mail[0] < 400:
                    self._write(envelope[1:])
                    rcpt = self._reply()
                    if rcpt[0] < 400:
                        self._write([b"DATA\r\n"])
                        data = self._reply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            return Result("retry", f"connection lost before DATA: {exc}", reconnect=True)
        for code, text in (mail, rcpt):
            if code == 421:
                return Result("retry", text, reconnect=True)
        if mail[0] >= 400 or rcpt[0] >= 400 or data[0] != 354:
            return self._refused(mail, rcpt, data)
        try:
            self._write(chunks[:-1])
        except OSError as exc:
            return Result("retry", f"connection lost during DATA: {exc}", reconnect=True)
        if commit is not None:
            try:
                commit()
            except BaseException:
                self._abandon()  # the server drops a message that never ended
                raise
        end = chunks[-1:]
        if ahead is not None and self.pipelining and self.t.settings.smtp_pipeline_ahead:
            # RFC 2920: the next transaction's MAIL, RCPT and DATA go in the same
            # packet as this one's final ".": one round trip per message, not two.
            end = [*end, f"MAIL FROM:<{ahead[0]}>\r\nRCPT TO:<{ahead[1]}>\r\nDATA\r\n".encode()]
        try:
            self._write(end)
        except OSError as exc:  # the final "." was not sent: nothing was delivered
            return Result("retry", f"connection lost at the end of DATA: {exc}", reconnect=True)
        if len(end) > 1:
            self.ahead = ahead
        try:
            code, text = self._final_reply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # RFC 5321 6.1: the only case where the message may or may not be delivered.
            return Result(
                "in_doubt", f"connection lost after the end of DATA: {exc}", reconnect=True
            )
        if 200 <= code < 300:
            return Result("sent", text)
        if code == 421:
            return Result("retry", text, reconnect=True)
        # The reply to "." ends the transaction: no RSET is needed (and with the next
        # one written ahead, the server may already be reading its data).
        if code < 500:
            return Result("deferred", text)
        if classify(code, text) == "address":
            return Result("failed", text, bounce=True)
        # The same message goes to everyone: a refusal of its content (or of us) is
        # not this subscriber's, and would refuse the rest too.
        return Result("failed", f"end of DATA: {text}", stop=True)

    def _final_reply(self) -> tuple[int, str]:
        """The reply to the final ".", waited for up to the data timeout (RFC 5321
        4.5.3.2.6 says 10 minutes: the server may be scanning the message)."""
        sock = self.smtp.sock
        if sock is not None:
            sock.settimeout(self.t.settings.smtp_data_timeout)
        try:
            return self._reply()
        finally:
            if sock is not None and self.smtp.sock is sock:
                with contextlib.suppress(OSError):
                    sock.settimeout(self.t.settings.smtp_timeout)

    def _refused(
        self, mail: tuple[int, str], rcpt: tuple[int, str], data: tuple[int, str]
    ) -> Result:
        if data[0] == 354:  # a server that took DATA anyway: end it with an empty message
            try:
                self._write([b".\r\n"])
                self._reply()
            except (smtplib.SMTPServerDisconnected, OSError):
                return Result("retry", "connection lost", reconnect=True)
        if mail[0] >= 400:
            code, text = mail
            # Our own envelope sender refused: never the subscriber's fault.
            result = Result(
                "deferred" if code < 500 else "failed", f"MAIL FROM: {text}", stop=code >= 500
            )
        elif rcpt[0] >= 400:
            code, text = rcpt
            if code < 500:
                result = Result("deferred", text)
            else:
                kind = classify(code, text)
                result = Result("failed", text, bounce=kind == "address", policy=kind == "policy")
        else:
            code, text = data
            if code == 421:
                return Result("retry", text, reconnect=True)
            result = Result(
                "deferred" if code < 500 else "failed", f"DATA: {text}", stop=code >= 500
            )
        return self._after_failure(result)

    def _after_failure(self, result: Result) -> Result:
        """Reset the session after a refused transaction (RSET); reconnect if that fails."""
        try:
            self._write([b"RSET\r\n"])
            code, _ = self._reply()
        except (smtplib.SMTPServerDisconnected, OSError):
            code = 0
        if code != 250:
            return dataclasses.replace(result, reconnect=True)
        return result

    def close(self) -> None:
        if self.ahead is not None:
            # The server is (or will be) reading the data of a message we will not
            # send: cutting the connection is the only way to end it unsent.
            self.ahead = None
            self._abandon()
            return
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._abandon()


class MaildirTransport:
    """The local outbox: each message a file in ``outbox/new`` (Maildir)."""

    wire = False

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.label = f"local outbox (Maildir) {outbox}"
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def connect(self) -> MaildirConnection:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.outbox / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(
                f"{self.outbox}: cannot create the outbox: {exc.strerror}"
            ) from None
        return MaildirConnection(self)

    def unique_name(self) -> str:
        with self._lock:
            n = next(self._counter)
        return f"{time.time():.6f}.P{os.getpid()}Q{n}.{socket.gethostname()}"


class MaildirConnection:
    wire = False

    def __init__(self, transport: MaildirTransport) -> None:
        self.t = transport

    def send(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        commit: Commit | None = None,
        ahead: tuple[str, str] | None = None,
    ) -> Result:
        """Write the message to ``tmp/``, then move it into ``new/`` (Maildir's
        delivery step); ``commit`` runs just before the move."""
        name = self.t.unique_name()
        tmp = self.t.outbox / "tmp" / name
        envelope = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
        try:
            with tmp.open("wb") as f:
                f.write(b"".join([envelope, *chunks]).replace(b"\r\n", b"\n"))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return Result(
                "failed",
                f"{self.t.outbox}: cannot write to the outbox: "
                f"{exc.strerror}; free some space, then run send again",
                stop=True,
            )
        try:
            if commit is not None:
                commit()
            os.replace(tmp, self.t.outbox / "new" / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"{tmp}: cannot move into the outbox: {exc.strerror}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Result("sent", f"250 written to {self.t.outbox / 'new' / name}")

    def close(self) -> None:
        pass


def make_transport(settings: Settings) -> Transport:
    if settings.uses_smtp:
        return SMTPTransport(settings)
    return MaildirTransport(settings.outbox)
