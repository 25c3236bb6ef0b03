"""SIGKILL trials (issue: reliability). Run: python benchmarks/bench_kill.py [TRIALS] [N]

Each trial: N subscribers (default 3,000), a real `newsletter send` over 4
connections to an SMTP server on 127.0.0.1 (aiosmtpd, counting what it accepts),
killed with SIGKILL at a random moment, then resumed with the default policy
(messages in doubt are not resent). Reported per trial: messages in doubt, how
many of those the server had, lost (should be only in-doubt ones the server never
got), duplicates (should be 0). The same checks as the test suite's trials.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

sys.path.insert(0, str(REPO))

from tests.send import test_resume  # noqa: E402


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    test_resume.N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    test_resume.CONNECTIONS = 4
    rows = []
    for seed in range(1, trials + 1):
        home = Path(tempfile.mkdtemp(prefix="bench-kill-"))
        (home / "issues").mkdir()
        shutil.copy(REPO / "issues" / "2025-04-16.yaml", home / "issues")
        os.environ["NEWSLETTER_HOME"] = str(home)
        started = time.monotonic()
        figures = test_resume.kill_trial(home, seed)
        rows.append(figures)
        print(
            f"trial {seed:2d}: in doubt {figures['in_doubt']}, of which the server had "
            f"{figures['in_doubt_delivered']}; lost {figures['lost']}; duplicates "
            f"{figures['duplicates']}  ({time.monotonic() - started:.1f} s)",
            flush=True,
        )
        shutil.rmtree(home, ignore_errors=True)
    total = {k: sum(r[k] for r in rows) for k in rows[0]}
    print(
        f"{trials} trials of {test_resume.N:,} subscribers, 4 connections: "
        f"{total['in_doubt']} in doubt ({total['in_doubt_delivered']} delivered), "
        f"{total['lost']} lost (all among the in-doubt ones), "
        f"{total['duplicates']} duplicates, every other subscriber exactly once"
    )


if __name__ == "__main__":
    main()
