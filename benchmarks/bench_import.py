"""Import benchmark (issue: send, item 2). Run: python benchmarks/bench_import.py

`newsletter subscribers import` of a 100,000-row and a 1,000,000-row CSV
(Mailchimp-like columns, 5% duplicates, 1% bad rows) as whole processes:
rows per second and peak RSS. Memory must not grow with the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench_send import timed_child
from common import BIN


def make_csv(path: Path, rows: int) -> None:
    domains = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "bücher.de"]
    with path.open("w", encoding="utf-8") as f:
        f.write('"Email Address","First Name","Last Name","MEMBER_RATING","TAGS"\n')
        for i in range(rows):
            n = i - 1 if i % 20 == 0 and i else i  # 5% duplicates
            email = f"not-an-address-{i}" if i % 100 == 7 else f"User.{n}@{domains[n % 5]}"
            f.write(f'"{email}","User","Number {n}","{n % 5}","""weekly"""\n')


def main() -> None:
    for rows in (100_000, 1_000_000):
        home = Path(tempfile.mkdtemp(prefix="bench-import-"))
        make_csv(home / "people.csv", rows)
        env = {**os.environ, "NEWSLETTER_HOME": str(home)}
        elapsed, rss, out = timed_child(
            [str(BIN / "newsletter"), "subscribers", "import", "people.csv"], env, home
        )
        print(
            f"import {rows:>9,} rows: {rows / elapsed:8,.0f} rows/s, peak RSS "
            f"{rss / 1024:5.0f} MB  ({out.splitlines()[0]})"
        )
        shutil.rmtree(home)


if __name__ == "__main__":
    main()
