"""Import benchmark (issue: engine). Run: python benchmarks/bench_import.py [ROWS...]

`newsletter subscribers import` of CSV files (Mailchimp-like columns, 5%
duplicates, 1% bad rows) as whole processes: rows per second and peak RSS,
against the reference measured in the same run: plain CSV-to-SQLite (Python's
csv reader into one table with executemany, no validation), as a whole process
too. Medians of 5 runs, interleaved. Memory must not grow with the file.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_send import timed_child
from common import BIN

REFERENCE = """
import csv, sqlite3, sys
db = sqlite3.connect(sys.argv[2])
db.execute("CREATE TABLE t (email TEXT UNIQUE, first TEXT, last TEXT, rating TEXT, tags TEXT)")
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    next(rows)
    db.executemany("INSERT OR IGNORE INTO t VALUES (?, ?, ?, ?, ?)", rows)
db.commit()
"""


def make_csv(path: Path, rows: int) -> None:
    domains = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "bücher.de"]
    with path.open("w", encoding="utf-8") as f:
        f.write('"Email Address","First Name","Last Name","MEMBER_RATING","TAGS"\n')
        for i in range(rows):
            n = i - 1 if i % 20 == 0 and i else i  # 5% duplicates
            email = f"not-an-address-{i}" if i % 100 == 7 else f"user.{n}@{domains[n % 5]}"
            f.write(f'"{email}","User","Number {n}","{n % 5}","""weekly"""\n')


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [200_000, 1_000_000]
    for rows in sizes:
        work = Path(tempfile.mkdtemp(prefix="bench-import-"))
        make_csv(work / "people.csv", rows)
        ours, ref, rss = [], [], 0
        for run in range(int(os.environ.get("BENCH_RUNS", "5"))):
            home = work / f"home{run}"
            (home / "issues").mkdir(parents=True)
            shutil.copy(work / "people.csv", home / "people.csv")
            env = {**os.environ, "NEWSLETTER_HOME": str(home)}
            elapsed, peak, out = timed_child(
                [str(BIN / "newsletter"), "subscribers", "import", "people.csv"], env, home
            )
            ours.append(rows / elapsed)
            rss = max(rss, peak)
            elapsed, _, _ = timed_child(
                [sys.executable, "-c", REFERENCE, "people.csv", f"ref{run}.db"], env, home
            )
            ref.append(rows / elapsed)
            shutil.rmtree(home)
        a, b = statistics.median(ours), statistics.median(ref)
        print(
            f"import {rows:>9,} rows: {a:9,.0f} rows/s (peak RSS {rss / 1024:4.0f} MB); "
            f"plain CSV-to-SQLite {b:9,.0f} rows/s; ratio {a / b:.2f}"
        )
        print(f"  ({out.splitlines()[0]})")
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
