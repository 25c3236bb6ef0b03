"""The cost of a durable delivery log (issue: reliability).
Run: python benchmarks/bench_durability.py [STEPS]

Commits per second of the delivery log's per-message step (record an outcome,
mark the next message in flight) from 4 threads, as a send with 4 connections
makes them, with SQLite's synchronous=FULL (what we use: survives power loss)
against NORMAL (survives a process crash only), in the same run, on this
machine's disk. Median of 5 runs each, interleaved.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from composer.store.database import Store
from composer.store.delivery_log import DeliveryLog

THREADS = 4


def make_db(folder: Path, n: int) -> Path:
    path = folder / "newsletter.db"
    with Store(path) as store, store.transaction() as db:
        db.execute("INSERT INTO sends VALUES ('i', 'd', 's', 'x', 'x')")
        db.executemany(
            "INSERT INTO subscribers (id, email, created_at, updated_at) VALUES (?, ?, 'x', 'x')",
            ((i, f"r{i}@example.org") for i in range(n)),
        )
        db.executemany(
            "INSERT INTO deliveries (issue, subscriber_id) VALUES ('i', ?)",
            ((i,) for i in range(n)),
        )
    return path


def run(path: Path, steps: int, synchronous: str) -> float:
    logs = [DeliveryLog(path, "i") for _ in range(THREADS)]
    for log in logs:
        log.db.execute(f"PRAGMA synchronous={synchronous}")

    def work(k: int) -> None:
        log = logs[k]
        for j in range(k, steps, THREADS):
            log.step((j, "sent", "250 ok", 1, 0.0, None), (j + THREADS) % steps)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for log in logs:
        log.close()
    return steps / elapsed


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    results: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        path = make_db(Path(tmp), steps)
        for _ in range(5):
            for mode in ("FULL", "NORMAL"):
                results[mode].append(run(path, steps, mode))
    full, normal = (statistics.median(results[m]) for m in ("FULL", "NORMAL"))
    print(
        f"delivery-log commits/s, {THREADS} threads: FULL {full:,.0f}, NORMAL {normal:,.0f}; "
        f"FULL/NORMAL = {full / normal:.2f} (per commit: {1e6 / full:.0f} us vs "
        f"{1e6 / normal:.0f} us)"
    )


if __name__ == "__main__":
    main()
