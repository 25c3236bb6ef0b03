"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from composer.cli import app


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    """Run the CLI in-process; stderr is kept apart from stdout."""
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def write_issue(home: Path, name: str, replace: list[tuple[str, str]]) -> Path:
    """A variant of the seed issue in ``home/issues/name``."""
    source = (home / "issues" / "2025-04-16.yaml").read_text(encoding="utf-8")
    for old, new in replace:
        assert old in source, old
        source = source.replace(old, new, 1)
    path = home / "issues" / name
    path.write_text(source, encoding="utf-8")
    return path


DATA = Path(__file__).resolve().parent / "data"


def add_edition(path: Path, code: str, overlay: str) -> Path:
    """Add the edition ``code`` (YAML text of its overlay) to the issue file ``path``."""
    body = "".join(f"    {line}\n" if line.strip() else "\n" for line in overlay.splitlines())
    source = path.read_text(encoding="utf-8").rstrip("\n")
    path.write_text(f"{source}\n\neditions:\n  {code}:\n{body}", encoding="utf-8")
    return path


def bilingual_seed(home: Path) -> Path:
    """The seed issue in ``home`` with its Spanish edition (tests/data/seed-edition-es.yaml)."""
    overlay = (DATA / "seed-edition-es.yaml").read_text(encoding="utf-8")
    return add_edition(home / "issues" / "2025-04-16.yaml", "es", overlay)


def seed_with_more_links(source: str, per_region: int = 5) -> str:
    """The seed issue's text with ``per_region`` other-news links in every region."""
    import re

    links = "".join(
        f"          - title: Another story from the region, number {i}, with a headline of "
        "ordinary length\n"
        "            url: https://www.business-humanrights.org/en/latest-news/another-story-"
        f"from-the-region-number-{i}/\n"
        for i in range(per_region)
    )
    return re.sub(
        r'(        other_news_label: "[^"]*"\n)',
        lambda m: m.group(1) + "        other_news:\n" + links,
        source,
    )


def pairs(home: Path, sql: str) -> dict[Any, Any]:
    """A two-column query on the newsletter's database, as a dict."""
    db = Database(home)
    try:
        return dict(db.execute(sql).fetchall())
    finally:
        db.close()


def database_target(home: Path) -> Any:
    """Where this test's newsletter keeps its data: the SQLite file, or the
    PostgreSQL database of the PostgreSQL run (NEWSLETTER_DB)."""
    import os

    from composer.dburl import DatabaseURL

    raw = os.environ.get("NEWSLETTER_DB", "")
    if DatabaseURL.accepts(raw):
        return DatabaseURL(raw)
    return Path(raw) if raw else home / "newsletter.db"


class Database:
    """Direct SQL on the test's database, either backend (``?`` placeholders:
    composer's own translation). Writes commit at once."""

    def __init__(self, home: Path) -> None:
        from composer.store.connection import connect

        self.conn = connect(database_target(home))

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(args))

    def commit(self) -> None:
        """Nothing to do: every statement commits by itself."""

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kept_env() -> dict[str, str]:
    """What a test's child process keeps of the test's settings when it starts
    from a clean environment: which database (the PostgreSQL run's)."""
    import os

    return {k: os.environ[k] for k in ("NEWSLETTER_DB",) if k in os.environ}


def database_text(home: Path) -> str:
    """Everything stored, as text (to prove a secret is not in it): the SQLite
    files' bytes, or every row of every PostgreSQL table."""
    target = database_target(home)
    if isinstance(target, Path):
        return "".join(
            p.read_bytes().decode("latin-1") for p in target.parent.glob(target.name + "*")
        )
    with Database(home) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        ]
        return "\n".join(
            repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}").fetchall()
        )


def mount_tmpfs(folder: Path, size: str) -> None:
    """A small tmpfs at ``folder``, to fill (the caller unmounts it: ``umount -l``)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = f"cannot mount a small tmpfs to fill (needs root): {result.stderr.strip()}"
        if os.environ.get("NEWSLETTER_REQUIRE_MOUNT") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
