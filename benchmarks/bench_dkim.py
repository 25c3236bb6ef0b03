"""DKIM's cost (issue: deliverability). Run: python benchmarks/bench_dkim.py [N] [--runs K]

- per message, in process: build_chunks alone, then with an RSA-2048 signature,
  then with RSA and Ed25519 (median of repeats), for the seed issue and the
  small issue;
- `newsletter send` to Postfix's smtp-sink, 4 connections, N messages (default
  10,000), DKIM on (RSA + Ed25519) against off, runs interleaved, medians.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from bench_send import ensure_postfix, free_port, make_home, start_sink
from bench_wire import ISSUES, ours
from common import median_seconds, messages_and_runs


def add_keys(home: Path) -> dict[str, str]:
    from composer.mail.dkim import new_key

    env = {}
    (home / "dkim").mkdir(mode=0o700)
    for kind, prefix in (("rsa", "DKIM"), ("ed25519", "DKIM_ED25519")):
        pem, _ = new_key(kind)
        path = home / "dkim" / f"b.{kind}.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
        env[f"{prefix}_SELECTOR"] = "b"
        env[f"{prefix}_PRIVATE_KEY"] = str(path)
    return env


def per_message(home: Path, issue: Path, env: dict[str, str]) -> float:
    from composer.config import load_settings
    from composer.send.prepare import message_template, prepare
    from composer.send.recipients import Recipients

    settings = load_settings(home, env=env)
    prepared = prepare(str(issue), settings)
    tpl = message_template(settings, prepared)
    make = Recipients(settings, prepared.slug)
    people = [make.subscriber(i, f"reader{i}@example.org", f"Reader {i}") for i in range(500)]

    def batch() -> None:
        for r in people:
            tpl.build_chunks(r, wire=True)

    return median_seconds(batch, 7, warmup=1) / len(people)


def send(n: int, port: int, issue: Path, keys: dict[str, str]) -> float:
    return ours(n, port, issue, keys)[0]


def main() -> None:
    n, runs = messages_and_runs(10_000, 3)
    keys_home = make_home(1)
    keys = add_keys(keys_home)
    rsa_only = {k: v for k, v in keys.items() if not k.startswith("DKIM_ED25519")}
    for name, issue in ISSUES.items():
        shutil.copy(issue, keys_home / "issues")
        base = per_message(keys_home, issue, {})
        rsa = per_message(keys_home, issue, rsa_only)
        both = per_message(keys_home, issue, keys)
        print(
            f"{name}: per message build {base * 1e6:.0f} µs; with RSA-2048 {rsa * 1e6:.0f} µs; "
            f"with RSA + Ed25519 {both * 1e6:.0f} µs (target: build + one signature <= 600 µs)"
        )
    ensure_postfix()
    port = free_port()
    sink = start_sink(port)
    try:
        for name, issue in ISSUES.items():
            on, off = [], []
            for _ in range(runs):
                on.append(send(n, port, issue, keys))
                off.append(send(n, port, issue, {}))
            a, b = statistics.median(on), statistics.median(off)
            print(
                f"{name}: newsletter send {n:,}, 4 connections: DKIM (RSA + Ed25519) "
                f"{a:,.0f} msgs/s, without {b:,.0f} msgs/s; ratio {a / b:.2f} (target >= 0.85)"
            )
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(keys_home)


if __name__ == "__main__":
    main()
