"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, with fault injection.

Faults are set per recipient address as a list of actions, one per attempt
(the last one repeats): "ok", "450", "550", "421", "drop_before_data"
(close the connection at RCPT), "drop_after_data" (take the message, then
close without replying), "hang_after_data" (take it, never reply), or any
reply given verbatim ("554 5.7.1 <x>: Relay access denied"). ``mail_reply``
answers every MAIL FROM so; ``data_reply`` every end of data (the message is
then not kept); "data:<reply>" answers that recipient's end of data so.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str] = field(default_factory=list)

    def message(self) -> email.message.EmailMessage:
        message = email.message_from_bytes(self.content, policy=email.policy.SMTP)
        assert isinstance(message, email.message.EmailMessage)
        return message


@dataclass
class Handler:
    pipelining: bool = True
    eight_bit: bool = True  # offer 8BITMIME (aiosmtpd does by default)
    faults: dict[str, list[str]] = field(default_factory=dict)
    delay: float = 0.0  # seconds per message, to make runs long enough to interrupt
    mail_reply: str | None = None
    data_reply: str | None = None
    auth_attempts: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _action(self, address: str) -> str:
        with self.lock:
            plan = self.faults.get(address, ["ok"])
            n = self.attempts[address]
            self.attempts[address] += 1
        return plan[min(n, len(plan) - 1)]

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if not self.eight_bit:
            responses = [r for r in responses if "8BITMIME" not in r.upper()]
            last = responses[-1]
            responses[-1] = last[:3] + " " + last[4:]  # the last line ends the reply
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        action = self._action(address)
        envelope.__dict__.setdefault("actions", {})[address] = action
        if action == "450":
            return "450 4.2.1 Mailbox busy, try again later"
        if action == "550":
            return "550 5.1.1 No such user here"
        if action == "421":
            return "421 4.3.2 Service shutting down"
        if action == "drop_before_data":
            assert server.transport is not None
            _abort(server)
            return "250 OK"
        if action[:1].isdigit() and " " in action:
            return action
        envelope.rcpt_tos.append(address)
        if action.startswith("data:"):
            envelope.__dict__.setdefault("actions", {})[address] = action
        return "250 2.1.5 OK"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        if "BODY=8BITMIME" in (o.upper() for o in mail_options) and not self.eight_bit:
            return "555 5.5.4 BODY=8BITMIME is not offered here"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        actions = envelope.__dict__.get("actions", {})
        for action in actions.values():
            if action.startswith("data:"):  # refused at the end of its data
                return str(action.removeprefix("data:"))
        content = envelope.original_content or b""
        eight_bit_body = "BODY=8BITMIME" in (o.upper() for o in envelope.mail_options)
        if not eight_bit_body and any(byte > 127 for byte in content):
            return "554 5.6.1 8-bit data without BODY=8BITMIME"
        if max(map(len, content.split(b"\r\n")), default=0) > 998:
            return "554 5.6.0 a line longer than 998 octets"
        with self.lock:
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    content,
                    list(envelope.mail_options),
                )
            )
        actions = envelope.__dict__.get("actions", {})
        if self.delay:
            await asyncio.sleep(self.delay)
        if "drop_after_data" in actions.values():
            assert server.transport is not None
            _abort(server)
        if "hang_after_data" in actions.values():
            await asyncio.sleep(3600)
        return "250 2.0.0 OK queued as T1"

    # -- what tests look at -------------------------------------------------

    def recipients(self) -> Counter[str]:
        with self.lock:
            return Counter(r for m in self.received for r in m.rcpt_tos)


class Server:
    def __init__(self, handler: Handler, **smtp_kwargs: Any) -> None:
        self.handler = handler
        self.port = free_port()
        self.controller = Controller(
            handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **smtp_kwargs
        )

    def env(self, security: str = "none") -> dict[str, str]:
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": security,
            "SMTP_TIMEOUT": "5",
            # A local test server: loopback links and example domains are fine.
            "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        }


@contextlib.contextmanager
def running(handler: Handler, **smtp_kwargs: Any) -> Iterator[Server]:
    server = Server(handler, **smtp_kwargs)
    server.controller.start()
    try:
        yield server
    finally:
        if server.controller._thread is not None:  # a test may have stopped it already
            server.controller.stop()


def password_authenticator(user: str, password: str, handler: Handler | None = None) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if handler is not None:
            handler.auth_attempts += 1
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def tls_context(cert: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (to test timeouts)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        sock.close()


def write_ca(ca: Any, folder: Path) -> Path:
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _abort(server: SMTP) -> None:
    """Drop the client's connection at once, as a crashing server would."""
    transport = server.transport
    assert isinstance(transport, asyncio.Transport)
    transport.abort()
