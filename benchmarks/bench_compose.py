"""Compose benchmarks (issue: compose). Run: python benchmarks/bench_compose.py

- in-process build of the seed issue (load, validate, render, inline, text);
- `newsletter build` and `newsletter --help` as whole processes: a build of an
  unchanged issue, of an issue edited since the last build (the editor's loop),
  and with no cache at all (a new newsletter's first build);
- the reference: `python -c "import typer, jinja2, premailer, mjml"`, same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from common import BIN, REPO, median_seconds, process_seconds, report

from composer.issue.load import load_issue
from composer.render.pipeline import render_issue

SEED = REPO / "issues" / "2025-04-16.yaml"


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    in_process = median_seconds(lambda: render_issue(load_issue(SEED)), repeat * 2, warmup=2)
    newsletter = str(BIN / "newsletter")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        (home / "issues").mkdir()
        issue = home / "issues" / SEED.name
        shutil.copy(SEED, issue)
        argv = [newsletter, "build", str(issue), "--out", str(home / "out")]
        build = process_seconds(argv, repeat, cwd=home)
        edits = iter(range(10**6))

        def edit() -> None:
            """The editor's loop: a word changed, then a build (caches as it left them)."""
            text = SEED.read_text(encoding="utf-8")
            issue.write_text(text.replace("Clearview", f"Clearview {next(edits)}"), "utf-8")

        edited = process_seconds(argv, repeat, cwd=home, before=edit)
        cold = process_seconds(
            argv, repeat, cwd=home, before=lambda: shutil.rmtree(home / "build" / ".cache", True)
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
            (
                "newsletter build (process, issue edited since the last build)",
                edited,
                f"{edited / ref:.2f}x reference",
            ),
            (
                "newsletter build (process, no cache at all)",
                cold,
                f"{cold / ref:.2f}x reference",
            ),
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
