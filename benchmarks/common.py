"""Helpers for the benchmarks: medians of repeated runs, and a report table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def _bytecode_env() -> dict[str, str]:
    """The environment with .pyc files written and read, as on a user's machine
    (any non-empty PYTHONDONTWRITEBYTECODE, "0" included, turns writing off, and
    every process would then compile each module changed since its last .pyc)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass(frozen=True)
class Case:
    """A whole process to time: its command line, folder, and what runs untimed before it."""

    argv: list[str]
    cwd: Path = REPO
    before: Callable[[], object] | None = None


def interleaved_seconds(cases: dict[str, Case], repeat: int) -> dict[str, float]:
    """Median wall time of each case's process, the cases taken in turn
    (a, b, c, a, b, c, ...) so that a machine busier in one minute than the
    next weighs on every case alike, references included. One untimed round first."""
    env = _bytecode_env()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeat + 1):
        for name, case in cases.items():
            if case.before is not None:
                case.before()
            start = time.perf_counter()
            subprocess.run(
                case.argv,
                cwd=case.cwd,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if round_:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in samples.items()}


def report(rows: list[tuple[str, float, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value * 1000:9.2f} ms  {note}")


def messages_and_runs(default_n: int, default_runs: int) -> tuple[int, int]:
    """``[N] [--runs K]`` from the command line (other ``--name value`` pairs skipped)."""
    args = sys.argv[1:]
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else default_runs
    plain = [
        a
        for i, a in enumerate(args)
        if not a.startswith("--") and not (i and args[i - 1].startswith("--"))
    ]
    return (int(plain[0]) if plain else default_n), runs
