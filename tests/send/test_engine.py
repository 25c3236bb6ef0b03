"""The engine drives every connection from one thread: what a slow, stalled or
oddly-speaking server does to one connection must not hold up the others, and
replies are read right however the bytes arrive."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from composer.mail.transport import COMMIT, FINAL, REPLY, Transport
from composer.send import engine
from composer.send.engine import WORK, _Link, _Relay, group_complete
from composer.send.rate import RateLimiter
from tests.helpers import Database, run
from tests.send.test_send import add_subscribers, counts, use


@dataclass
class Log:
    port: int = 0
    delivered: list[tuple[int, str]] = field(default_factory=list)  # (connection, rcpt)
    events: list[str] = field(default_factory=list)  # in the order they happened
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


Reply = Callable[[socket.socket, bytes], None]


def _whole(conn: socket.socket, text: bytes) -> None:
    conn.sendall(text)


def _dribbled(conn: socket.socket, text: bytes) -> None:
    """One byte at a time, each its own TCP segment."""
    for i in range(len(text)):
        conn.sendall(text[i : i + 1])
        time.sleep(0.0005)


def _serve(
    conn: socket.socket,
    number: int,
    log: Log,
    reply: Reply,
    stall: bool,
    stagger: float = 0.0,
    end_delay: float = 0.0,
) -> None:
    buffer = b""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def line() -> bytes:
        nonlocal buffer
        while b"\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError
            buffer += chunk
        out, _, buffer = buffer.partition(b"\n")
        return out.rstrip(b"\r")

    rcpt = ""
    with contextlib.suppress(ConnectionError, OSError):
        reply(conn, b"220-scripted ESMTP\r\n220 more greeting\r\n")
        while True:
            command = line().upper()
            if command.startswith(b"EHLO"):
                reply(conn, b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif command.startswith(b"RCPT TO:"):
                rcpt = command[9:-1].decode().lower()
                reply(conn, b"250 2.1.5 ok\r\n")
            elif command.startswith((b"MAIL", b"RSET", b"NOOP")):
                reply(conn, b"250 2.1.0 ok\r\n")
            elif command == b"DATA":
                time.sleep(stagger * number)  # connection n answers n staggers late
                reply(conn, b"354 go ahead\r\n")
                while line() != b".":
                    pass
                if stall:  # never answer the end of data; wait for the client to give up
                    log.note(f"stalled on {rcpt}")
                    while conn.recv(65536):
                        pass
                    log.note("stalled connection closed by the client")
                    return
                time.sleep(end_delay)
                with log.lock:
                    log.delivered.append((number, rcpt))
                    log.events.append(f"delivered {rcpt}")
                # A multi-line reply to the end of data (legal, if unusual).
                reply(conn, b"250-2.0.0 queued as ABC\r\n250 2.0.0 see you\r\n")
            elif command == b"QUIT":
                reply(conn, b"221 bye\r\n")
                return
            else:
                reply(conn, b"502 no\r\n")
    conn.close()


@contextlib.contextmanager
def server(
    reply: Reply = _whole, stall_first: bool = False, stagger: float = 0.0, end_delay: float = 0.0
) -> Iterator[Log]:
    log = Log()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    log.port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        number = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            stall = stall_first and number == 0
            threading.Thread(
                target=_serve,
                args=(conn, number, log, reply, stall, stagger, end_delay),
                daemon=True,
            ).start()
            number += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join()
        listener.close()


def _env(port: int, **extra: str) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": "10",
        **extra,
    }


def test_replies_arriving_a_byte_at_a_time_and_over_several_lines(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    addresses = add_subscribers(8)
    with server(reply=_dribbled) as log:
        use(monkeypatch, _env(log.port))
        result = run("send", "2025-04-16", "--yes", "--connections", "2")
    assert result.exit_code == 0, result.output
    assert sorted(r for _, r in log.delivered) == addresses
    assert counts(newsletter_home) == {"sent": 8}
    # The log keeps the whole reply to the end of data, its lines joined.
    db = Database(newsletter_home)
    try:
        replies = {r for (r,) in db.execute("SELECT reply FROM deliveries")}
    finally:
        db.close()
    assert replies == {"250 2.0.0 queued as ABC 2.0.0 see you"}


def test_a_stalled_connection_does_not_hold_up_the_others(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    """The first connection's server never answers the end of data. Until the data
    timeout gives up on it (that message is then in doubt: it may have been
    delivered), the other connections send everything else."""
    addresses = add_subscribers(24)
    with server(stall_first=True) as log:
        use(monkeypatch, _env(log.port, SMTP_DATA_TIMEOUT="5"))
        result = run("send", "2025-04-16", "--yes", "--connections", "3")
    assert result.exit_code == 3, result.output  # 3: something is in doubt
    stalled = [e for e in log.events if e.startswith("stalled on ")]
    assert len(stalled) == 1
    stalled_rcpt = stalled[0].removeprefix("stalled on ")
    assert counts(newsletter_home) == {"sent": 23, "in_doubt": 1}
    assert sorted(r for _, r in log.delivered) == sorted(set(addresses) - {stalled_rcpt})
    # Everything else was delivered while that connection was still waiting, but
    # for the one message written ahead on it (RFC 2920): that one goes out on the
    # connection that replaces it.
    closed = log.events.index("stalled connection closed by the client")
    after = [e for e in log.events[closed + 1 :] if e.startswith("delivered ")]
    assert len(after) <= 1
    assert len(log.delivered) - len(after) == 22
    assert {n for n, _ in log.delivered} >= {1, 2}  # by the other connections


def _commits(stderr: str) -> tuple[int, int]:
    """(records, commits) from the engine's debug line at the end of a send."""
    match = re.search(r"delivery log: (\d+) records in (\d+) commits", stderr)
    assert match, stderr
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize(
    ("hold", "end_delay", "grouped"),
    [(0.0, 0.0, False), (0.25, 0.0, True), (0.25, 0.004, False)],
    ids=["no hold", "hold, near relay", "hold, farther relay"],
)
def test_connections_near_the_relay_share_each_commit(
    monkeypatch: pytest.MonkeyPatch,
    newsletter_home: Path,
    hold: float,
    end_delay: float,
    grouped: bool,
) -> None:
    """Each connection's reply to DATA comes 20 ms after the previous one's. Held
    for the others (HOLD, raised here so that a busy machine cannot split a group),
    the four connections reach their point of delivery together, and one commit
    records four messages; committed as soon as each is ready, one records about
    one. A relay that takes 4 ms to answer a "." is not near (NEAR): nobody is
    held for its sessions. Every message is delivered once and recorded sent."""
    monkeypatch.setattr(engine, "HOLD", hold)
    addresses = add_subscribers(24)
    with server(stagger=0.02, end_delay=end_delay) as log:
        use(monkeypatch, _env(log.port))
        result = run("-v", "send", "2025-04-16", "--yes", "--connections", "4")
    assert result.exit_code == 0, result.output
    assert sorted(r for _, r in log.delivered) == addresses
    assert counts(newsletter_home) == {"sent": 24}
    records, commits = _commits(result.stderr)
    if grouped:
        # 24 messages in groups of 4; the first group (before any outcome) and the
        # last (the outcomes on their own) may come apart.
        assert commits <= 24 // 4 + 2, (records, commits)
    else:
        # (before the first reply to a "." the relay counts as near: one group)
        assert commits >= 24 // 2, (records, commits)


def _link(op: str | None, fastest: float = 0.0) -> _Link:
    """A session waiting for ``op``, on a relay whose quickest reply to "." took
    ``fastest`` (0: none yet)."""
    relay = _Relay("r", cast(Transport, None), 1, RateLimiter(None, None))
    relay.fastest = fastest
    link = _Link(None, relay=relay)
    link.op = op
    return link


def test_a_group_waits_only_for_sessions_whose_replies_are_due() -> None:
    at_commit = [_link(COMMIT), _link(COMMIT)]
    assert group_complete(at_commit, 2)
    # A session waiting for the replies to MAIL/RCPT/DATA, or to its final ".",
    # is about to reach its point of delivery: wait for it (a relay that has not
    # answered a "." yet counts as near).
    assert not group_complete([*at_commit, _link(REPLY)], 2)
    assert not group_complete([*at_commit, _link(FINAL, engine.NEAR / 10)], 2)
    # One waiting for work, sleeping (rate, backoff) or finished is not.
    assert group_complete([*at_commit, _link(WORK), _link("sleep"), _link(None)], 2)
    # Nor one of a farther relay: held in step there, the connections only queue
    # behind each other at the relay; with several relays, a near one's groups do
    # not wait on a farther one's.
    assert group_complete([*at_commit, _link(REPLY, engine.NEAR), _link(FINAL, 0.02)], 2)
