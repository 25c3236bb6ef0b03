"""One round trip per message: the next transaction's MAIL, RCPT and DATA go out with
the current one's final "." (RFC 2920), and nothing goes wrong around it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import run
from tests.send.test_send import add_subscribers, counts, use
from tests.smtp_server import Handler, running


@dataclass
class Scripted:
    """A plain SMTP server that notes, at each end of data, whether the next
    transaction's commands had already arrived before it answered."""

    port: int = 0
    ahead: list[bool] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


def _serve(conn: socket.socket, seen: Scripted) -> None:
    buffer = b""

    def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError
            buffer += chunk
        out, _, buffer = buffer.partition(b"\r\n")
        return out

    conn.sendall(b"220 scripted ESMTP\r\n")
    with contextlib.suppress(ConnectionError, OSError):
        while True:
            command = line().upper()
            if command.startswith(b"EHLO"):
                conn.sendall(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif command.startswith(b"RCPT TO:"):
                seen.recipients.append(command[9:-1].decode().lower())
                conn.sendall(b"250 ok\r\n")
            elif command.startswith((b"MAIL", b"RSET", b"NOOP")):
                conn.sendall(b"250 ok\r\n")
            elif command == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                while line() != b".":
                    pass
                # Wait a moment as a far relay would: a client that pipelines has
                # sent the next MAIL/RCPT/DATA with the "." already.
                conn.settimeout(0.3)
                with contextlib.suppress(TimeoutError):
                    while b"DATA\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buffer += chunk
                conn.settimeout(None)
                seen.ahead.append(buffer.startswith(b"MAIL FROM:"))
                conn.sendall(b"250 queued\r\n")
            elif command == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 no\r\n")


@contextlib.contextmanager
def scripted() -> Iterator[Scripted]:
    seen = Scripted()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    seen.port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_serve, args=(conn, seen), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        listener.close()


def _env(port: int) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": "5",
    }


def test_the_next_transaction_goes_out_with_the_final_dot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addresses = add_subscribers(6)
    with scripted() as seen:
        use(monkeypatch, _env(seen.port))
        result = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert result.exit_code == 0, result.output
    assert sorted(seen.recipients) == sorted(addresses)
    assert seen.ahead == [True] * 5 + [False]  # the last one had nothing after it


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    add_subscribers(3)
    with scripted() as seen:
        use(monkeypatch, {**_env(seen.port), "SMTP_PIPELINE_AHEAD": "off"})
        assert run("send", "2025-04-16", "--yes", "--connections", "1").exit_code == 0
    assert seen.ahead == [False] * 3


def test_a_refusal_at_the_end_of_data_with_the_next_one_ahead(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(5)
    handler = Handler(
        faults={
            a[1]: ["data:550 5.1.1 <x>: user unknown"],
            a[3]: ["data:451 4.3.0 try later", "ok"],
        }
    )
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes", "--connections", "1", "--retry-delay", "0.01")
    assert result.exit_code == 0, result.output
    assert handler.recipients() == {a[0]: 1, a[2]: 1, a[3]: 1, a[4]: 1}
    assert counts(newsletter_home) == {"sent": 4, "failed": 1}
    assert run("subscribers", "list", "--status", "bounced").stdout.startswith(a[1])


def test_a_stop_with_a_transaction_written_ahead_sends_it_later(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    a = add_subscribers(8)
    # The third message's end is refused for everyone's reasons: the run stops with the
    # fourth written ahead (its data never sent); resume sends it, once.
    handler = Handler(faults={a[2]: ["data:554 5.7.1 message content rejected", "ok"]})
    with running(handler) as server:
        use(monkeypatch, server.env())
        stopped = run("send", "2025-04-16", "--yes", "--connections", "1")
        assert stopped.exit_code == 1 and "message content rejected" in stopped.stderr
        assert counts(newsletter_home) == {"sent": 2, "pending": 6}
        resumed = run("send", "2025-04-16", "--yes", "--connections", "1")
    assert resumed.exit_code == 0, resumed.output
    assert handler.recipients() == {address: 1 for address in a}
