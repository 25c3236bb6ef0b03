"""Transactional mail never waits: from a sign-up's POST to the relay's 250 for
its confirmation mail, idle and while a 20,000-subscriber send runs on the
same machine, against the same database and the same relay (Postfix's
smtp-sink on 127.0.0.1, as in bench_send).

Run: python benchmarks/bench_signup.py [--subscribers N] [--signups N]

Each sign-up is timed from just before its POST (the client's clock) to the
moment `serve` recorded the relay's 250 (``signups.mailed``, the same clock:
one machine). Reported: median, 95th percentile and worst, against the
issue's target (95th percentile at most 2 s during the send).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_send import ensure_postfix, free_port, make_home, send_env, start_sink
from common import BIN

TARGET_P95 = 2.0


def start_serve(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "newsletter"), "serve", "--port", str(port)],
        env={**env, "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}"},
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("serve did not start")


def sign_ups(port: int, prefix: str, n: int, gap: float) -> dict[str, float]:
    """``n`` sign-ups ``gap`` seconds apart; the time each POST started, by address."""
    started = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        page = client.get("/subscribe").text
        token = re.search(r'name="t" value="([^"]+)"', page)
        assert token
        for i in range(n):
            email = f"{prefix}{i}@example.net"
            started[email] = time.time()
            r = client.post("/subscribe", data={"email": email, "t": token.group(1)})
            assert r.status_code == 200, r.text
            time.sleep(gap)
    return started


def latencies(home: Path, started: dict[str, float], timeout: float = 60.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        db = sqlite3.connect(home / "newsletter.db", timeout=30)
        try:
            mailed = dict(
                db.execute("SELECT email, mailed FROM signups WHERE mailed IS NOT NULL").fetchall()
            )
        finally:
            db.close()
        if all(e in mailed for e in started) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = [e for e in started if e not in mailed]
    if missing:
        raise RuntimeError(f"{len(missing)} confirmation mails never reached the relay")
    return sorted(mailed[e] - t for e, t in started.items())


def summary(label: str, values: list[float]) -> str:
    p95 = values[max(0, round(0.95 * len(values)) - 1)]
    return (
        f"{label}: {len(values)} sign-ups, median {statistics.median(values) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, worst {values[-1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--signups", type=int, default=60)
    args = parser.parse_args()
    ensure_postfix()
    sink_port = free_port()
    sink = start_sink(sink_port)
    home = make_home(args.subscribers)
    env = send_env(
        home,
        sink_port,
        NEWSLETTER_SIGNUP_MIN_SECONDS="0",
        NEWSLETTER_SIGNUP_PER_IP_HOUR="100000",
        NEWSLETTER_FROM="Weekly Update <news@example.org>",
    )
    serve, port = start_serve(home, env)
    try:
        idle = latencies(home, sign_ups(port, "idle", args.signups, 0.05))
        print(summary("idle", idle))
        send = subprocess.Popen(
            [str(BIN / "newsletter"), "send", "2025-04-16", "--yes", "--connections", "4"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)  # the send is under way: its plan made, its connections open
        started = time.perf_counter()
        busy_started = sign_ups(port, "busy", args.signups, 0.1)
        still_sending = send.poll() is None
        out, err = send.communicate(timeout=600)
        send_seconds = time.perf_counter() - started + 1.5
        assert send.returncode == 0, err.decode()[-500:]
        busy = latencies(home, busy_started)
        print(summary("during the send", busy))
        p95 = busy[max(0, round(0.95 * len(busy)) - 1)]
        print(
            f"  the send of {args.subscribers:,} was still running after the last sign-up: "
            f"{still_sending}; it took about {send_seconds:.0f} s "
            f"({args.subscribers / send_seconds:,.0f} msgs/s)"
        )
        print(
            f"  target: p95 <= {TARGET_P95:.1f} s during the send: "
            f"{'met' if p95 <= TARGET_P95 else 'NOT met'} ({p95:.3f} s)"
        )
        sent = re.search(r"([\d,]+) sent", out.decode())
        print(f"  send summary: {sent.group(0) if sent else out.decode()[-200:]}")
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()
        sink.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
