"""Compose benchmarks (issue: compose). Run: python benchmarks/bench_compose.py

- in-process build of the seed issue (load, validate, render, inline, text);
- `newsletter build` and `newsletter --help` as whole processes;
- the reference: `python -c "import typer, jinja2, premailer, mjml"`, same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile

from common import BIN, REPO, median_seconds, process_seconds, report

from composer.issue.load import load_issue
from composer.render.pipeline import render_issue

SEED = REPO / "issues" / "2025-04-16.yaml"


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    in_process = median_seconds(lambda: render_issue(load_issue(SEED)), repeat * 2, warmup=2)
    newsletter = str(BIN / "newsletter")
    with tempfile.TemporaryDirectory() as out:
        build = process_seconds([newsletter, "build", str(SEED), "--out", out], repeat)
        cold = process_seconds(
            [newsletter, "build", str(SEED), "--out", out],
            repeat,
            before=lambda: shutil.rmtree(REPO / "build" / ".cache", True),
        )
    help_ = process_seconds([newsletter, "--help"], repeat)
    ref = process_seconds([sys.executable, "-c", "import typer, jinja2, premailer, mjml"], repeat)
    report(
        [
            ("in-process build of the seed issue", in_process, "target <= 40 ms"),
            (
                "newsletter build (process, unchanged issue)",
                build,
                f"target <= 400 ms; {build / ref:.2f}x reference",
            ),
            ("newsletter build (process, cold cache)", cold, f"{cold / ref:.2f}x reference"),
            (
                "newsletter --help (process)",
                help_,
                f"target <= 150 ms; {help_ / ref:.2f}x reference",
            ),
            ("reference: import typer, jinja2, premailer, mjml", ref, "same run"),
        ]
    )
    print(f"HTML size of the seed issue: {render_issue(load_issue(SEED)).html_bytes} bytes")


if __name__ == "__main__":
    main()
