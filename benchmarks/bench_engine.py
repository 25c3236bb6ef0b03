"""The send engine far from the relay (issue: engine). Run:
python benchmarks/bench_engine.py [N] [--runs K]

A relay is usually 10-50 ms away. Here a proxy written below adds 10 ms each way
(a 20 ms round trip) between `newsletter send` and Postfix's smtp-sink on
127.0.0.1. With 4 connections, a client that waits for two round trips per
message can reach at most 4 / 40 ms = 100 msgs/s; one that writes the next
MAIL/RCPT/DATA with the final "." (RFC 2920) waits for one: at most 200 msgs/s.
Both are measured in the same run (SMTP_PIPELINE_AHEAD on and off), median of 5,
as the rate the send itself reports (process start excluded).
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time

from bench_send import (
    BIN,
    ensure_postfix,
    free_port,
    make_home,
    send_env,
    start_sink,
    timed_child,
)
from common import messages_and_runs

# Threads and time.sleep (nanosleep): asyncio's timers wake on epoll's whole
# milliseconds, rounded up, which made the round trip 21.1 ms, not 20 (and more
# under load); with threads it is 20.5-20.8 ms, measured and printed each run.
PROXY = r"""
import queue, socket, sys, threading, time
DELAY = float(sys.argv[3])
UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
sys.setswitchinterval(1e-4)  # a thread woken for a delivery gets the GIL at once

def pump(src, dst):
    # src -> dst, each piece written DELAY seconds after it was read.
    pieces = queue.SimpleQueue()
    def deliver():
        while True:
            at, data = pieces.get()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
    writer = threading.Thread(target=deliver, daemon=True)
    writer.start()
    while True:
        try:
            data = src.recv(262144)
        except OSError:
            data = b""
        pieces.put((time.monotonic() + DELAY, data))
        if not data:
            break
    writer.join()

def handle(client):
    up = socket.create_connection(UPSTREAM)
    for s in (client, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ways = [threading.Thread(target=pump, args=p, daemon=True) for p in ((client, up), (up, client))]
    for t in ways:
        t.start()
    for t in ways:
        t.join()
    client.close()
    up.close()

server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""


def round_trip_ms(port: int, probes: int = 50) -> float:
    """The proxy's own round trip, measured: median of NOOPs to the sink through it."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = s.makefile("rb")
        replies.readline()  # the greeting
        times = []
        for _ in range(probes):
            start = time.perf_counter()
            s.sendall(b"NOOP\r\n")
            replies.readline()
            times.append((time.perf_counter() - start) * 1000)
        s.sendall(b"QUIT\r\n")
    return statistics.median(times)


def send_rate(n: int, port: int, ahead: bool) -> float:
    home = make_home(n)
    env = send_env(home, port, SMTP_PIPELINE_AHEAD="on" if ahead else "off")
    _, _, out = timed_child(
        [str(BIN / "newsletter"), "send", "2025-04-16", "--yes", "--connections", "4"], env, home
    )
    match = re.search(r"this run: ([\d,]+) sent.* \(([\d,]+) msg/s\)", out)
    assert match and match.group(1).replace(",", "") == str(n), out
    return float(match.group(2).replace(",", ""))


def main() -> None:
    n, runs = messages_and_runs(2000, 5)
    delay = float(os.environ.get("BENCH_DELAY", "0.010"))
    ensure_postfix()
    sink_port, proxy_port = free_port(), free_port()
    sink = start_sink(sink_port)
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(proxy_port), str(sink_port), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline() == "ready\n"
        time.sleep(0.2)
        on, off = [], []
        for _ in range(runs):
            on.append(send_rate(n, proxy_port, True))
            off.append(send_rate(n, proxy_port, False))
        a, b = statistics.median(on), statistics.median(off)
        rtt = round_trip_ms(proxy_port)
        print(f"through a 20 ms round trip, 4 connections, {n:,} messages of 99.5 KB:")
        print(
            f"  the proxy's round trip, measured: {rtt:.2f} ms (one-round-trip bound at "
            f"that: {4000 / rtt:,.0f} msgs/s)"
        )
        print(
            f"  next transaction with the final '.': median {a:,.0f} msgs/s "
            f"({a / 200:.2f} of the one-round-trip bound, 200)"
        )
        print(
            f"  waiting for each reply:              median {b:,.0f} msgs/s "
            f"({b / 100:.2f} of the two-round-trip bound, 100); gain {a / b:.2f}x"
        )
    finally:
        proxy.terminate()
        sink.terminate()


if __name__ == "__main__":
    main()
