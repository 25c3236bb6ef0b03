"""Shared fixtures. Tests never touch the user's data: every test runs with
NEWSLETTER_HOME (and the working folder) in a temporary newsletter folder
holding a copy of the seed issue, and with no SMTP settings from outside."""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres_server
from tests.dns_server import dns_server  # noqa: F401 (a fixture for every test module)
from tests.imap_server import imap_server  # noqa: F401 (a fixture for every test module)

REPO = Path(__file__).resolve().parent.parent
SEED_ISSUE = REPO / "issues" / "2025-04-16.yaml"
SEED_TEXT = Path(__file__).resolve().parent / "data" / "weekly-update-2025-04-16.txt"
ARTIFACTS = Path(os.environ.get("NEWSLETTER_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"

_ENV_PREFIXES = ("SMTP_", "NEWSLETTER_")

# The storage backend this run tests: the suite runs once on each (the README's
# test command). NEWSLETTER_TEST_BACKEND=postgresql runs every test that stores
# anything against a PostgreSQL server of its own (tests/postgres_server.py).
BACKEND = os.environ.get("NEWSLETTER_TEST_BACKEND", "sqlite")
ON_POSTGRES = BACKEND == "postgresql"
_server: postgres_server.PostgresServer | None = None


def pytest_report_header() -> str:
    return f"storage backend: {BACKEND}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL run: tests that never store anything (marked ``no_database``)
    and tests of SQLite itself (``sqlite_only``) are not run again; without
    PostgreSQL installed, the run skips, saying why (CI requires it)."""
    if not ON_POSTGRES:
        return
    missing = postgres_server.bindir() is None
    if missing and postgres_server.REQUIRE_POSTGRES:
        raise pytest.UsageError(postgres_server.MISSING)
    for item in items:
        if item.get_closest_marker("no_database"):
            item.add_marker(pytest.mark.skip(reason="stores nothing: run on SQLite only"))
        elif item.get_closest_marker("sqlite_only"):
            item.add_marker(pytest.mark.skip(reason="about SQLite itself"))
        elif missing:
            item.add_marker(pytest.mark.skip(reason=postgres_server.MISSING))


def pytest_sessionfinish() -> None:
    if _server is not None:
        _server.stop()


def _postgres() -> postgres_server.PostgresServer:
    global _server
    if _server is None:
        _server = postgres_server.start()
    return _server


@pytest.fixture
def postgres_url() -> str:
    """An empty PostgreSQL database of its own, on either run."""
    if postgres_server.bindir() is None:
        if postgres_server.REQUIRE_POSTGRES:
            raise RuntimeError(postgres_server.MISSING)
        pytest.skip(postgres_server.MISSING)
    return _postgres().fresh_database()


@pytest.fixture(autouse=True)
def newsletter_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / "issues").mkdir(parents=True)
    shutil.copy(SEED_ISSUE, home / "issues" / SEED_ISSUE.name)
    monkeypatch.setenv("NEWSLETTER_HOME", str(home))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key")
    if ON_POSTGRES:
        monkeypatch.setenv("NEWSLETTER_DB", _postgres().fresh_database())
    monkeypatch.chdir(home)
    yield home
    # The markers are checked, not trusted: a test said to store nothing made no
    # database, and on PostgreSQL nothing fell back to a SQLite file.
    stray = home / "newsletter.db"
    if request.node.get_closest_marker("no_database") and not ON_POSTGRES:
        assert not stray.exists(), "a test marked no_database made a database"
    if ON_POSTGRES and not request.node.get_closest_marker("sqlite_only"):
        assert not stray.exists(), "a SQLite database was made on the PostgreSQL run"


def normalise(text: str) -> str:
    """Compare text as a reader sees it: NFC, one space, case-folded."""
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    return re.sub(r"\s+", " ", text).strip().casefold()


def seed_content_lines() -> list[str]:
    """Every line of the newsletter in the seed, down to 'Company non-responses'."""
    lines = []
    for raw in SEED_TEXT.read_text(encoding="utf-8").splitlines():
        line = normalise(raw)
        if line:
            lines.append(line)
        if line == "company non-responses":
            break
    return lines


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def chromium_available() -> bool:
    """Whether the browser tests can run; CI sets NEWSLETTER_REQUIRE_BROWSER=1
    so that a missing browser fails there instead of skipping."""
    if Path(CHROMIUM).exists():
        return True
    if os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    return False


NEEDS_BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not chromium_available(),
        reason=f"browser test skipped: Debian's chromium is not at {CHROMIUM} "
        "(apt-get install chromium; CI installs it and requires these tests)",
    ),
]
