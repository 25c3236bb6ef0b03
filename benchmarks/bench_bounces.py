"""Bounce reading on the test corpus (issue: bounces and complaints).
Run: python benchmarks/bench_bounces.py [--repeat N] [--show KIND]

- accuracy against tests/data/bounces/labels.jsonl: recipient right, class
  right, and dangerously wrong (a policy, soft or auto-reply message taken for
  hard, or a complaint missed), by label source and by server;
- throughput: messages read per second, the corpus repeated N times (default
  5), against the 500 messages/s target.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO

sys.path.insert(0, str(REPO))

from composer.mail.bounces import read_bounce  # noqa: E402

CORPUS = REPO / "tests" / "data" / "bounces"


def labels() -> list[dict[str, Any]]:
    with (CORPUS / "labels.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def score(show: str | None = None) -> dict[str, float]:
    total = right_rcpt = right_kind = dangerous = counted = 0
    wrong: collections.Counter[str] = collections.Counter()
    for label in labels():
        kinds = list(label["kinds"])
        recipients = list(label["recipients"])
        if not kinds:
            continue
        found = read_bounce((CORPUS / "emails" / str(label["file"])).read_bytes())
        expected_kind = kinds[0]
        # The bounce of the label's first recipient (a report may list several, in
        # another order), else the first one read.
        mine = [b for b in found if recipients and b.recipient == recipients[0]] or found
        got_kind = mine[0].kind if mine else "unknown"
        total += 1
        right_kind += got_kind == expected_kind
        if (expected_kind in ("policy", "soft", "autoreply") and got_kind == "hard") or (
            expected_kind == "complaint" and got_kind != "complaint"
        ):
            dangerous += 1
        if got_kind != expected_kind:
            server = str(label["file"]).rsplit("-", 1)[0]
            wrong[f"{expected_kind}->{got_kind} {server}"] += 1
            if show and show in (expected_kind, got_kind, "all"):
                print(
                    f"  {label['file']}: want {expected_kind} {label['reasons']}, got "
                    f"{got_kind} [{found[0].status if found else ''}] "
                    f"{found[0].diagnostic[:100] if found else ''}"
                )
        if recipients:
            counted += 1
            got = {b.recipient for b in found}
            right_rcpt += recipients[0] in got
            if show == "recipient" and recipients[0] not in got:
                print(f"  {label['file']}: want {recipients[0]}, got {sorted(got)[:3]}")
    print(f"class right:      {right_kind}/{total} = {right_kind / total:.1%} (target 90%)")
    print(f"recipient right:  {right_rcpt}/{counted} = {right_rcpt / counted:.1%} (target 95%)")
    print(f"dangerously wrong: {dangerous}/{total} = {dangerous / total:.2%} (target < 1%)")
    for what, n in wrong.most_common(12):
        print(f"  {n:3} {what}")
    return {"class": right_kind / total, "recipient": right_rcpt / counted}


def throughput(repeat: int) -> float:
    files = sorted((CORPUS / "emails").glob("*.eml"))
    data = [p.read_bytes() for p in files]
    start = time.perf_counter()
    for _ in range(repeat):
        for raw in data:
            read_bounce(raw)
    rate = repeat * len(data) / (time.perf_counter() - start)
    print(f"read {repeat * len(data):,} messages: {rate:,.0f} msgs/s (target 500)")
    return rate


def scan_process(repeat: int) -> float:
    """`newsletter bounces scan --json` as a whole process over the corpus copied
    ``repeat`` times into one folder: messages per second."""
    import os
    import shutil
    import subprocess
    import tempfile

    from common import BIN

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "issues").mkdir()  # a newsletter's folder, with no database
        folder = Path(tmp) / "bounces"
        folder.mkdir()
        for i in range(repeat):
            for path in (CORPUS / "emails").glob("*.eml"):
                shutil.copy(path, folder / f"{i}-{path.name}")
        env = {**os.environ, "NEWSLETTER_HOME": tmp, "NEWSLETTER_SECRET_KEY": "bench"}
        start = time.perf_counter()
        out = subprocess.run(
            [str(BIN / "newsletter"), "bounces", "scan", "--json", str(folder)],
            env=env,
            check=True,
            capture_output=True,
        ).stdout
        elapsed = time.perf_counter() - start
    lines = out.count(b"\n")
    print(
        f"newsletter bounces scan: {lines:,} messages in {elapsed:.2f} s, "
        f"{lines / elapsed:,.0f} msgs/s (target 500)"
    )
    return lines / elapsed


if __name__ == "__main__":
    args = sys.argv[1:]
    show = args[args.index("--show") + 1] if "--show" in args else None
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 5
    score(show)
    throughput(repeat)
    scan_process(repeat)
