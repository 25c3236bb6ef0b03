"""Transports: SMTP and a local Maildir outbox, behind one small interface.

The only module that imports smtplib. smtplib does what it does well
(connecting, TLS with a verifying context, EHLO, AUTH); the mail transaction
itself is written here so that it can use PIPELINING (RFC 2920: MAIL, RCPT and
DATA in one write, and the next transaction's with the final "."), send a body
that was dot-stuffed once per issue, as chunks, without copying it per message,
and run on a non-blocking socket.

A transaction is a generator (``Connection.transaction``): it writes into the
connection's buffer and yields what it waits for: ``REPLY`` (a reply from the
server), ``FINAL`` (the reply to the final ".", with the longer data timeout) or
``COMMIT`` (the point of delivery: the engine records the message in flight,
durably, before the final "." is written). One thread drives every connection
of a send this way (``send.engine``); ``run_blocking`` drives one on its own.

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
import selectors
import smtplib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
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


# What a transaction waits for (see the module's docstring).
REPLY = "reply"
FINAL = "final"
COMMIT = "commit"
# A transaction: yields REPLY, FINAL or COMMIT; is resumed with None once that is
# there (or has an OSError thrown in: the connection broke or timed out; or the
# commit's error); returns what happened to the message.
Transaction = Generator[str, None, Result]
# Called once a message is complete but for its final "." (or its rename into
# the outbox): the moment from which it may be delivered.
Commit = Callable[[], None]


class Connection(Protocol):
    wire: bool  # whether transactions take the SMTP DATA form (dot-stuffed, final ".")
    eight_bit: bool  # whether the server takes 8bit bodies (8BITMIME, RFC 6152)
    fd: int | None  # the socket to watch, if any
    replies: deque[tuple[int, bytes]]  # replies read and not yet taken
    broken: OSError | None  # why the connection cannot be read or written any more
    pending_output: int  # bytes written but not yet taken by the kernel

    def transaction(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        ahead: tuple[str, str] | None = None,
        eight_bit: bool = False,
    ) -> Transaction: ...

    def on_readable(self) -> None: ...

    def on_writable(self) -> None: ...

    def close(self) -> None: ...


def run_blocking(conn: Connection, tx: Transaction, commit: Commit | None = None) -> Result:
    """Drive one transaction of ``conn`` to its end on its own (a test copy), waiting
    as needed: ``run_blocking(conn, conn.transaction(sender, recipient, chunks))``."""
    settings_timeout = getattr(conn, "timeout", 30.0)
    op: str | None = None
    error: BaseException | None = None
    while True:
        try:
            op = tx.throw(error) if error is not None else tx.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            if op == COMMIT:
                if commit is not None:
                    commit()
            else:
                _wait_reply(
                    conn, getattr(conn, "data_timeout", 600.0) if op == FINAL else settings_timeout
                )
        except Exception as exc:
            error = exc


def _wait_reply(conn: Connection, timeout: float) -> None:
    if conn.fd is None:
        return
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(conn.fd, selectors.EVENT_READ)
        while not conn.replies:
            if conn.broken is not None:
                raise conn.broken
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply within {timeout:g} s")
            sel.modify(
                conn.fd,
                selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.pending_output else 0),
            )
            for _, events in sel.select(left):
                if events & selectors.EVENT_WRITE:
                    conn.on_writable()
                if events & selectors.EVENT_READ:
                    conn.on_readable()


class Transport(Protocol):
    label: str
    wire: bool

    def connect(self) -> Connection: ...


def _reply_text(code: int, message: bytes | str) -> str:
    """A reply as one line of at most 500 characters, for the log and the user."""
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
        self.eight_bit = self.smtp.has_extn("8bitmime")
        if self.smtp.sock is not None:
            # Our writes are whole messages and command groups, never keystrokes:
            # Nagle's algorithm would hold a final "." back for an ACK, a round trip.
            with contextlib.suppress(OSError):
                self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ahead: tuple[str, str] | None = None  # a transaction written ahead
        self.plain_socket = not isinstance(self.smtp.sock, ssl.SSLSocket)
        self.timeout = s.smtp_timeout
        self.data_timeout = s.smtp_data_timeout
        self.ahead_allowed = self.pipelining and s.smtp_pipeline_ahead
        sock = self.smtp.sock
        assert sock is not None
        self.sock: socket.socket = sock
        self.fd: int | None = sock.fileno()
        sock.setblocking(False)
        self._out: deque[memoryview] = deque()
        self.pending_output = 0
        self._written = 0  # bytes ever handed to the kernel
        self._inbuf = bytearray()
        self._lines: list[bytes] = []  # the lines so far of a multi-line reply
        self.replies: deque[tuple[int, bytes]] = deque()
        self.broken: OSError | None = None
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

    # -- non-blocking I/O ------------------------------------------------------

    def write(self, chunks: list[bytes]) -> None:
        """Queue ``chunks`` and write what the kernel takes now (never blocks)."""
        if not self._out and self.plain_socket and self.broken is None and len(chunks) <= 512:
            # The usual case: nothing queued; one sendmsg of the chunks as they are.
            try:
                sent = self.sock.sendmsg(chunks)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.broken = exc
                return
            self._written += sent
            for c in chunks:
                if sent >= len(c):
                    sent -= len(c)
                    continue
                view = memoryview(c)[sent:] if sent else memoryview(c)
                sent = 0
                self._out.append(view)
                self.pending_output += len(view)
            return
        for c in chunks:
            if c:
                self._out.append(memoryview(c))
                self.pending_output += len(c)
        self.on_writable()

    def on_writable(self) -> None:
        out = self._out
        sock = self.sock
        while out and self.broken is None:
            try:
                if self.plain_socket:
                    sent = sock.sendmsg(list(itertools.islice(out, 512)))
                else:  # SSLSocket has no sendmsg
                    sent = sock.send(out[0][:262144])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                self.broken = exc
                return
            self._written += sent
            self.pending_output -= sent
            while out and sent >= len(out[0]):
                sent -= len(out.popleft())
            if sent:
                out[0] = out[0][sent:]

    def on_readable(self) -> None:
        """Read what has arrived and parse it into replies."""
        while self.broken is None:
            try:
                data = self.sock.recv(262144)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                self.broken = exc
                return
            if not data:
                self.broken = ConnectionAbortedError("the server closed the connection")
                return
            self._parse(data)
            if self.plain_socket or not self.sock.pending():  # type: ignore[attr-defined]
                return

    def _parse(self, data: bytes) -> None:
        buf = self._inbuf
        buf += data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:end]).rstrip(b"\r")
            start = end + 1
            if line[3:4] == b"-":  # more lines follow
                self._lines.append(line[4:])
                continue
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
            if self._lines:
                self._lines.append(line[4:])
                text = b"\n".join(self._lines)
                self._lines = []
            else:
                text = line[4:]
            self.replies.append((code, text))
        del buf[:start]
        if len(buf) > 65536:
            self.broken = ConnectionAbortedError("the server sent a reply line over 64 KB")

    def _reply(self, op: str = REPLY) -> Generator[str, None, tuple[int, bytes]]:
        if not self.replies:
            yield op
        return self.replies.popleft()

    # -- the transaction ---------------------------------------------------------

    def transaction(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        ahead: tuple[str, str] | None = None,
        eight_bit: bool = False,
    ) -> Transaction:
        """One mail transaction. ``chunks`` is the DATA in wire form, its last chunk
        the final ``.``; it yields COMMIT just before that chunk is written.
        ``ahead``: the envelope (sender, recipient) of the message this connection
        sends next, written with this one's final "."; the next transaction must be
        for it, or the connection closed (``close`` then drops it unsent)."""
        sent_ahead, self.ahead = self.ahead, None
        if eight_bit and not self.eight_bit:
            self.ahead = sent_ahead
            return Result(
                "failed",
                f"{self.t.where} no longer offers 8BITMIME; set SMTP_8BITMIME=off",
                stop=True,
            )
        body = " BODY=8BITMIME" if eight_bit else ""
        try:
            if sent_ahead is not None:  # written with the previous message's final "."
                if sent_ahead != (sender, recipient):
                    raise OSError("the transaction written ahead was for someone else")
                mail = yield from self._reply()
                rcpt = yield from self._reply()
                data = yield from self._reply()
            elif self.pipelining:
                self.write(
                    [f"MAIL FROM:<{sender}>{body}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()]
                )
                mail = yield from self._reply()
                rcpt = yield from self._reply()
                data = yield from self._reply()
            else:
                self.write([f"MAIL FROM:<{sender}>{body}\r\n".encode()])
                mail = yield from self._reply()
                rcpt = data = (503, b"skipped")
                if mail[0] < 400:
                    self.write([f"RCPT TO:<{recipient}>\r\n".encode()])
                    rcpt = yield from self._reply()
                    if rcpt[0] < 400:
                        self.write([b"DATA\r\n"])
                        data = yield from self._reply()
        except OSError as exc:
            return Result("retry", f"connection lost before DATA: {exc}", reconnect=True)
        for code, raw in (mail, rcpt):
            if code == 421:
                return Result("retry", _reply_text(code, raw), reconnect=True)
        if mail[0] >= 400 or rcpt[0] >= 400 or data[0] != 354:
            return (yield from self._refused(mail, rcpt, data))
        self.write(chunks[:-1])
        try:
            yield COMMIT
        except BaseException:
            self._abandon()  # the server drops a message that never ended
            raise
        end = chunks[-1]
        delivered_from = self._written + self.pending_output + len(end)  # once "." is out
        if ahead is not None and self.ahead_allowed:
            # RFC 2920: the next transaction's MAIL, RCPT and DATA go in the same
            # packet as this one's final ".": one round trip per message, not two.
            envelope = f"MAIL FROM:<{ahead[0]}>{body}\r\nRCPT TO:<{ahead[1]}>\r\nDATA\r\n"
            self.write([end, envelope.encode()])
            self.ahead = ahead
        else:
            self.write([end])
        try:
            code, raw = yield from self._reply(FINAL)
        except OSError as exc:
            self.ahead = None
            if self._written < delivered_from:  # the final "." never left: not delivered
                return Result("retry", f"connection lost at the end of DATA: {exc}", reconnect=True)
            # RFC 5321 6.1: the only case where the message may or may not be delivered.
            return Result(
                "in_doubt", f"connection lost after the end of DATA: {exc}", reconnect=True
            )
        text = _reply_text(code, raw)
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

    def _refused(
        self, mail: tuple[int, bytes], rcpt: tuple[int, bytes], data: tuple[int, bytes]
    ) -> Transaction:
        if data[0] == 354:  # a server that took DATA anyway: end it with an empty message
            self.write([b".\r\n"])
            try:
                yield from self._reply()
            except OSError:
                return Result("retry", "connection lost", reconnect=True)
        if mail[0] >= 400:
            code, text = mail[0], _reply_text(*mail)
            # Our own envelope sender refused: never the subscriber's fault.
            result = Result(
                "deferred" if code < 500 else "failed", f"MAIL FROM: {text}", stop=code >= 500
            )
        elif rcpt[0] >= 400:
            code, text = rcpt[0], _reply_text(*rcpt)
            if code < 500:
                result = Result("deferred", text)
            else:
                kind = classify(code, text)
                result = Result("failed", text, bounce=kind == "address", policy=kind == "policy")
        else:
            code, text = data[0], _reply_text(*data)
            if code == 421:
                return Result("retry", text, reconnect=True)
            result = Result(
                "deferred" if code < 500 else "failed", f"DATA: {text}", stop=code >= 500
            )
        # Reset the session after a refused transaction (RSET); reconnect if that fails.
        self.write([b"RSET\r\n"])
        try:
            code, _ = yield from self._reply()
        except OSError:
            code = 0
        if code != 250:
            return dataclasses.replace(result, reconnect=True)
        return result

    def close(self) -> None:
        if self.ahead is not None or self.broken is not None:
            # The server is (or will be) reading the data of a message we will not
            # send: cutting the connection is the only way to end it unsent.
            self.ahead = None
            self._abandon()
            return
        try:  # QUIT, politely but briefly
            self.write([b"QUIT\r\n"])
            _wait_reply(self, min(self.timeout, 5.0))
        except OSError:
            pass
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
    eight_bit = False
    fd: int | None = None
    broken: OSError | None = None
    pending_output: int = 0

    def __init__(self, transport: MaildirTransport) -> None:
        self.t = transport
        self.replies: deque[tuple[int, bytes]] = deque()

    def transaction(
        self,
        sender: str,
        recipient: str,
        chunks: list[bytes],
        ahead: tuple[str, str] | None = None,
        eight_bit: bool = False,
    ) -> Transaction:
        """Write the message to ``tmp/``, then move it into ``new/`` (Maildir's
        delivery step); COMMIT comes just before the move."""
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
            yield COMMIT
            os.replace(tmp, self.t.outbox / "new" / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"{tmp}: cannot move into the outbox: {exc.strerror}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Result("sent", f"250 written to {self.t.outbox / 'new' / name}")

    def on_readable(self) -> None:
        pass

    def on_writable(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_transport(settings: Settings) -> Transport:
    if settings.uses_smtp:
        return SMTPTransport(settings)
    return MaildirTransport(settings.outbox)
