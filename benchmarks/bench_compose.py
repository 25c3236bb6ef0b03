"""Compose benchmarks (issue: compose). Run: python benchmarks/bench_compose.py

- in-process build of the seed issue (load, validate, render, inline, text);
- `newsletter build` and `newsletter --help` as whole processes: a build of an
  unchanged issue, of an issue edited since the last build (the editor's loop),
  and with no cache at all (a new newsletter's first build);
- the reference: `python -c "import typer, jinja2, premailer, mjml"`, same run;
  every process is timed in turn with the others (build, edited, cold, help,
  reference, build, ...), .pyc files written as on a user's machine.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from common import BIN, REPO, Case, interleaved_seconds, median_seconds, report

from composer.issue.load import load_issue
from composer.render.pipeline import render_issue

SEED = REPO / "issues" / "2025-04-16.yaml"


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    in_process = median_seconds(lambda: render_issue(load_issue(SEED)), repeat * 2, warmup=2)
    newsletter = str(BIN / "newsletter")
    with tempfile.TemporaryDirectory() as folder:
        top = Path(folder)
        homes = {}
        for name in ("build", "edited", "cold"):
            home = homes[name] = top / name
            (home / "issues").mkdir(parents=True)
            shutil.copy(SEED, home / "issues" / SEED.name)
        edits = iter(range(10**6))

        def argv(name: str) -> list[str]:
            home = homes[name]
            return [
                newsletter,
                "build",
                str(home / "issues" / SEED.name),
                "--out",
                str(home / "out"),
            ]

        def edit() -> None:
            """The editor's loop: a word changed, then a build (caches as it left them)."""
            text = SEED.read_text(encoding="utf-8")
            issue = homes["edited"] / "issues" / SEED.name
            issue.write_text(text.replace("Clearview", f"Clearview {next(edits)}"), "utf-8")

        def forget() -> None:
            shutil.rmtree(homes["cold"] / "build" / ".cache", True)

        times = interleaved_seconds(
            {
                "build": Case(argv("build"), homes["build"]),
                "edited": Case(argv("edited"), homes["edited"], edit),
                "cold": Case(argv("cold"), homes["cold"], forget),
                "help": Case([newsletter, "--help"]),
                "ref": Case([sys.executable, "-c", "import typer, jinja2, premailer, mjml"]),
            },
            repeat,
        )
    build, edited, cold, help_, ref = (times[k] for k in ("build", "edited", "cold", "help", "ref"))
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
