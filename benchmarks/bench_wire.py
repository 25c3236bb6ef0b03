"""The send engine at the machine's limit (issue: engine). Run:
python benchmarks/bench_wire.py [N] [--runs K]

`newsletter send` (4 connections, durable delivery log) against Postfix's
`smtp-source -s 4` (C) into the same smtp-sink on 127.0.0.1, runs interleaved
(ours, then theirs, K times), with messages of the same size:

- the seed issue (about 99 KB on the wire) and a small issue (the starter issue's
  lead story in the minimal theme, about 14 KB: the smallest our themes make);
- with the machine idle, then loaded: a CPU hog (a busy loop) on every core for
  the whole measurement, as on a shared server;
- CPU per message: the child's user + system time (from wait4) over the messages,
  ours including start-up, so the same as what the operator pays.

Rates are whole-process (start-up included) for both.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_send import (
    BIN,
    LIBS,
    REPO,
    SOURCE,
    ensure_postfix,
    free_port,
    make_home,
    send_env,
    start_sink,
)
from common import messages_and_runs

ISSUES = {
    "seed issue": REPO / "issues" / "2025-04-16.yaml",
    "small issue": REPO / "benchmarks" / "data" / "2025-05-07.yaml",
}


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) and stdout of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed: {out[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, out


def wire_size(home: Path, slug: str, eight_bit: bool = True) -> int:
    """Bytes of one message as sent to smtp-sink (which offers 8BITMIME)."""
    from composer.config import load_settings
    from composer.send.prepare import message_template, prepare
    from composer.send.recipients import Recipients

    settings = load_settings(home, env={})
    prepared = prepare(str(home / "issues" / f"{slug}.yaml"), settings)
    tpl = message_template(settings, prepared)
    sample = Recipients(settings, slug).sample()
    return sum(map(len, tpl.build_chunks(sample, wire=True, eight_bit=eight_bit)))


def ours(
    n: int, port: int, issue: Path, extra: dict[str, str] | None = None
) -> tuple[float, float]:
    """msgs/s and CPU seconds per message of one whole `newsletter send`."""
    home = make_home(n)
    shutil.copy(issue, home / "issues")
    wall, cpu, out = run(
        [str(BIN / "newsletter"), "send", issue.stem, "--yes", "--connections", "4"],
        send_env(home, port, **(extra or {})),
        home,
    )
    assert f"{n:,} sent" in out, out
    shutil.rmtree(home)
    return n / wall, cpu / n


def theirs(n: int, port: int, size: int) -> tuple[float, float]:
    argv = [str(SOURCE), "-s", "4", "-m", str(n), "-l", str(size)]
    argv += ["-f", "news@example.org", "-t", "reader@example.org", f"127.0.0.1:{port}"]
    wall, cpu, _ = run(argv, {**os.environ, **LIBS}, REPO)
    return n / wall, cpu / n


def hogs() -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]


def main() -> None:
    n, runs = messages_and_runs(20_000, 5)
    ensure_postfix()
    probe = make_home(1)
    for issue in ISSUES.values():
        shutil.copy(issue, probe / "issues")
    sizes = {name: wire_size(probe, issue.stem) for name, issue in ISSUES.items()}
    shutil.rmtree(probe)
    port = free_port()
    sink = start_sink(port)
    print(f"{n:,} messages a run, 4 connections, {runs} runs interleaved; medians")
    try:
        for load in ("idle", "loaded"):
            for name, issue in ISSUES.items():
                busy = hogs() if load == "loaded" else []
                try:
                    a, b = [], []
                    for _ in range(runs):
                        a.append(ours(n, port, issue))
                        b.append(theirs(n, port, sizes[name]))
                finally:
                    for h in busy:
                        h.kill()
                        h.wait()
                rate, ref = statistics.median(r for r, _ in a), statistics.median(r for r, _ in b)
                cpu, ref_cpu = (
                    statistics.median(c for _, c in a),
                    statistics.median(c for _, c in b),
                )
                print(
                    f"{load:6} {name} ({sizes[name] / 1000:.1f} KB): newsletter send "
                    f"{rate:,.0f} msgs/s, {cpu * 1e6:.0f} µs CPU/msg; smtp-source -s 4 "
                    f"{ref:,.0f} msgs/s, {ref_cpu * 1e6:.0f} µs CPU/msg; ratio {rate / ref:.2f}"
                )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
