"""8BITMIME's gain (issue: deliverability). Run: python benchmarks/bench_8bit.py [N] [--runs K]

Bytes per message of the seed issue and the small issue as 7bit (quoted-printable)
and 8bit, and `newsletter send` of N messages (default 10,000) to Postfix's
smtp-sink (which offers 8BITMIME) over 4 connections with SMTP_8BITMIME on and
off, runs interleaved, medians.
"""

from __future__ import annotations

import shutil
import statistics

from bench_send import ensure_postfix, free_port, make_home, start_sink
from bench_wire import ISSUES, ours, wire_size
from common import messages_and_runs


def main() -> None:
    n, runs = messages_and_runs(10_000, 3)
    ensure_postfix()
    probe = make_home(1)
    for issue in ISSUES.values():
        shutil.copy(issue, probe / "issues")
    port = free_port()
    sink = start_sink(port)
    try:
        for name, issue in ISSUES.items():
            seven, eight = wire_size(probe, issue.stem, False), wire_size(probe, issue.stem, True)
            on, off = [], []
            for _ in range(runs):
                on.append(ours(n, port, issue)[0])
                off.append(ours(n, port, issue, {"SMTP_8BITMIME": "off"})[0])
            a, b = statistics.median(on), statistics.median(off)
            print(
                f"{name}: {eight:,} bytes a message as 8bit, {seven:,} as quoted-printable "
                f"({eight / seven:.3f}); newsletter send {n:,}, 4 connections: 8bit "
                f"{a:,.0f} msgs/s, quoted-printable {b:,.0f} msgs/s ({a / b:.2f}x)"
            )
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(probe)


if __name__ == "__main__":
    main()
