"""Helpers for the benchmarks: medians of repeated runs, and a report table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def process_seconds(
    argv: list[str], repeat: int, cwd: Path = REPO, before: Callable[[], object] | None = None
) -> float:
    """Median wall time of a whole process; ``before`` runs untimed before each."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}

    def once() -> None:
        subprocess.run(
            argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    if before is None:
        return median_seconds(once, repeat, warmup=2)
    samples = []
    for _ in range(repeat + 1):
        before()
        start = time.perf_counter()
        once()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def report(rows: list[tuple[str, float, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value * 1000:9.2f} ms  {note}")


def messages_and_runs(default_n: int, default_runs: int) -> tuple[int, int]:
    """``[N] [--runs K]`` from the command line."""
    args = sys.argv[1:]
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else default_runs
    plain = [a for i, a in enumerate(args) if not a.startswith("--") and args[i - 1] != "--runs"]
    return (int(plain[0]) if plain else default_n), runs
