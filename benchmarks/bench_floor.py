"""The floor under the engine's CPU per message (issue: engine). Run:
python benchmarks/bench_floor.py [N] [--runs K] [--issue small|seed]

What the least a Python sender can do costs, to Postfix's smtp-sink on
127.0.0.1 with 4 connections and messages the size of the small issue's (or,
with --issue seed, the seed issue's): a
client written below, one thread, poll, pipelined (the next MAIL/RCPT/DATA
with the final "."), the same pre-built message every time, in three forms:

- no log at all: the wire alone;
- the log in SQLite (WAL, synchronous=FULL, as ours) with a commit per
  message (its 'sending' before the ".") and another for its outcome;
- the log with one commit per four messages: the four connections' outcomes
  and next 'sending' together, as the engine does when they are in step.

Measured in the same run as `smtp-source -s 4` and `newsletter send` (whole
process, start-up included, as `bench_wire.py` reports it). Medians, CPU of the
client process (user + system) per message.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_send import ensure_postfix, free_port, make_home, start_sink
from bench_wire import ISSUES, ours, run, theirs, wire_size
from common import messages_and_runs

CLIENT = r"""
import os, select, socket, sqlite3, sys
n, size, mode, port, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
body = b"From: news@example.org\r\nTo: reader@example.org\r\nSubject: floor\r\n\r\n"
body += (b"x" * 70 + b"\r\n") * max(1, (size - len(body)) // 72) + b".\r\n"
db = None
if mode != "none":
    db = sqlite3.connect(os.path.join(folder, "log.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, state TEXT NOT NULL, reply TEXT NOT NULL)")
    db.execute("CREATE INDEX d_state ON d (state, id)")
    with db:  # one transaction (in autocommit, each row would be its own fsync)
        db.execute("BEGIN")
        db.executemany("INSERT INTO d VALUES (?, 'pending', '')", ((i,) for i in range(n)))


def commit(outcomes, starts):
    db.execute("BEGIN IMMEDIATE")
    db.executemany("UPDATE d SET state = 'sent', reply = ? WHERE id = ?", outcomes)
    db.executemany("UPDATE d SET state = 'sending' WHERE id = ?", [(i,) for i in starts])
    db.execute("COMMIT")


taken = done = 0


def envelope():
    global taken
    if taken >= n:
        return None, b""
    taken += 1
    return taken - 1, b"MAIL FROM:<news@example.org>\r\nRCPT TO:<r%d@example.org>\r\nDATA\r\n" % (taken - 1)


class Link:
    def __init__(self, sock):
        self.sock, self.buf, self.previous, self.waiting = sock, b"", None, 3
        self.current, head = envelope()
        sock.send(head)


links = {}
for _ in range(4):
    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"EHLO floor\r\n")
    while f.readline()[3:4] != b" ":
        pass
    sock.setblocking(False)
    links[sock.fileno()] = Link(sock)
poller = select.poll()
for fd in links:
    poller.register(fd, select.POLLIN)
group = 4 if mode == "group" else 1
ready, outcomes = [], []
while done < n:
    for fd, _ in poller.poll():
        link = links[fd]
        link.buf += link.sock.recv(65536)
        while b"\n" in link.buf:
            line, _, link.buf = link.buf.partition(b"\n")
            if link.previous is not None:  # the reply to the previous message's "."
                done += 1
                if db is not None:
                    outcomes.append((line.decode(), link.previous))
                    if mode == "each":
                        commit(outcomes, [])
                        outcomes.clear()
                link.previous = None
                continue
            link.waiting -= 1
            if link.waiting:
                continue
            ready.append(link)  # its 354: the point of delivery
            active = sum(1 for k in links.values() if k.current is not None)
            if len(ready) < min(group, active):
                continue
            if db is not None:
                commit(outcomes, [k.current for k in ready])
                outcomes.clear()
            for k in ready:
                following, head = envelope()
                k.sock.sendall(body + head)
                k.previous, k.current, k.waiting = k.current, following, 3
            ready.clear()
if db is not None and outcomes:
    commit(outcomes, [])
"""


def floor(n: int, port: int, size: int, mode: str) -> tuple[float, float]:
    """msgs/s and CPU seconds per message of the floor client (whole process)."""
    folder = tempfile.mkdtemp(prefix="bench-floor-")
    try:
        argv = [sys.executable, "-c", CLIENT, str(n), str(size), mode, str(port), folder]
        wall, cpu, _ = run(argv, dict(os.environ), Path(folder))
        return n / wall, cpu / n
    finally:
        shutil.rmtree(folder)


def main() -> None:
    n, runs = messages_and_runs(20_000, 5)
    args = sys.argv[1:]
    which = args[args.index("--issue") + 1] if "--issue" in args else "small"
    if which not in ("small", "seed"):
        sys.exit(f"bench_floor.py: --issue takes small or seed, not {which!r}")
    ensure_postfix()
    issue = ISSUES[f"{which} issue"]
    probe = make_home(1)
    shutil.copy(issue, probe / "issues")
    size = wire_size(probe, issue.stem)
    shutil.rmtree(probe)
    port = free_port()
    sink = start_sink(port)
    cases = {
        "floor, no log": lambda: floor(n, port, size, "none"),
        "floor, a commit per message and per outcome": lambda: floor(n, port, size, "each"),
        "floor, one commit per four messages": lambda: floor(n, port, size, "group"),
        "newsletter send (whole process)": lambda: ours(n, port, issue),
        "smtp-source -s 4 (whole process)": lambda: theirs(n, port, size),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for _ in range(runs):
            for name, case in cases.items():
                results[name].append(case())
    finally:
        sink.terminate()
        sink.wait()
    print(f"{n:,} messages of {size / 1000:.1f} KB a run, 4 connections, {runs} runs; medians")
    for name, got in results.items():
        rate = statistics.median(r for r, _ in got)
        cpu = statistics.median(c for _, c in got)
        print(f"  {name:<46} {rate:8,.0f} msgs/s {cpu * 1e6:6.0f} µs CPU/msg")


if __name__ == "__main__":
    main()
