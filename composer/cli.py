"""The ``newsletter`` command. Thin: parse, call one core function, print.

Every ``ComposerError`` becomes ``Error: ...`` (or one line per problem for
an invalid issue file) on stderr and exit status 1; usage errors exit 2 (Click).
Heavy libraries are imported inside the commands that use them, so that
``newsletter --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composer.errors import ComposerError, IssueError

if TYPE_CHECKING:
    from composer.config import Settings

app = typer.Typer(
    name="newsletter",
    help="Compose, check, preview and send an email newsletter from YAML issue files.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

IssueArg = Annotated[
    str, typer.Argument(help="Issue file (issues/2025-04-16.yaml) or its date (2025-04-16).")
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Map our errors to messages and exit codes; nothing else is caught."""
    try:
        yield
    except IssueError as exc:
        for problem in exc.problems:
            _err(problem)
        raise typer.Exit(1) from None
    except ComposerError as exc:
        _err(f"Error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def _settings() -> Settings:
    from composer.config import load_settings

    return load_settings()


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


@app.command()
def build(
    issue: IssueArg,
    out: Annotated[
        Path | None, typer.Option(help="Folder to write to [default: build/DATE]")
    ] = None,
) -> None:
    """Render an issue: write email.html, email.txt and email.eml (for a sample subscriber)."""
    from composer.compose import build as build_issue

    with _errors():
        result = build_issue(issue, _settings(), out)
    for path in result.files:
        typer.echo(f"wrote {path}")
    size = result.rendered.html_bytes
    typer.echo(f"HTML part: {_kb(size)} (Gmail clips at 102 KB)")
    for finding in result.findings:
        _err(str(finding))


@app.command()
def check(issue: IssueArg) -> None:
    """Validate and lint an issue; exit 1 if it has errors, 0 with warnings listed."""
    from composer.compose import check as check_issue

    with _errors():
        loaded, findings = check_issue(issue, _settings())
    for finding in findings:
        typer.echo(str(finding))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    summary = f"{loaded.path}: {errors} error(s), {warnings} warning(s)"
    if errors:
        _err(summary)
        raise typer.Exit(1)
    typer.echo(summary)


@app.command()
def new(
    date: Annotated[
        str | None, typer.Option(help="Date of the new issue, YYYY-MM-DD [default: a week on]")
    ] = None,
) -> None:
    """Start the next issue from the structure of the latest one, stories emptied."""
    from composer.compose import new_issue

    when = None
    if date is not None:
        try:
            when = dt.date.fromisoformat(date)
        except ValueError:
            raise typer.BadParameter(
                f"{date!r} is not a date like 2025-04-23", param_hint="--date"
            ) from None
    with _errors():
        path = new_issue(_settings(), when)
    typer.echo(f"started {path}; fill it in, then run: newsletter check {path}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of issue files (for completion and validation in editors)."""
    from composer.model import json_schema

    json.dump(json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    typer.echo()


def main() -> None:
    app()
