"""The send engine far from the relay (issue: engine). Run: python benchmarks/bench_engine.py [N]

A relay is usually 10-50 ms away. Here a proxy written below adds 10 ms each way
(a 20 ms round trip) between `newsletter send` and Postfix's smtp-sink on
127.0.0.1. With 4 connections, a client that waits for two round trips per
message can reach at most 4 / 40 ms = 100 msgs/s; one that writes the next
MAIL/RCPT/DATA with the final "." (RFC 2920) waits for one: at most 200 msgs/s.
Both are measured in the same run (SMTP_PIPELINE_AHEAD on and off), median of 3,
as the rate the send itself reports (process start excluded).
"""

from __future__ import annotations

import os
import re
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

PROXY = r"""
import asyncio, sys, time
DELAY = float(sys.argv[3])

async def pump(reader, writer):
    queue = asyncio.Queue()
    async def deliver():
        while True:
            at, data = await queue.get()
            if data is None:
                writer.close()
                return
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    task = asyncio.create_task(deliver())
    while True:
        data = await reader.read(65536)
        await queue.put((time.monotonic() + DELAY, data or None))
        if not data:
            break
    await task

async def handle(client_reader, client_writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
    await asyncio.gather(pump(client_reader, up_writer), pump(up_reader, client_writer),
                         return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


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
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
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
        for _ in range(3):
            on.append(send_rate(n, proxy_port, True))
            off.append(send_rate(n, proxy_port, False))
        a, b = statistics.median(on), statistics.median(off)
        print(f"through a 20 ms round trip, 4 connections, {n:,} messages of 99.5 KB:")
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
