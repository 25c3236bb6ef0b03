"""The layout shows the flow: imports between our packages point one way, and each
library is imported only where it belongs (see the README, "How the code is laid out")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from composer.issue.files import EMPTIERS
from composer.issue.model import BLOCK_TYPES
from tests.conftest import REPO

pytestmark = pytest.mark.no_database

PACKAGE = REPO / "composer"

# What each part of composer/ may import of our own code (besides itself).
# issue <- render <- mail <- send <- web/cli; store and audience at the side.
ALLOWED = {
    "errors": set(),
    "fsutil": set(),
    "memo": {"fsutil"},
    "home": {"errors", "fsutil"},
    "dburl": set(),
    "config": {"errors", "home", "dburl"},
    "issue": {"errors", "fsutil"},
    "render": {"errors", "fsutil", "memo", "issue"},
    "mail": {"errors", "config", "memo", "issue", "render"},
    "store": {"errors", "dburl"},
    "audience": {"errors", "config", "fsutil", "mail", "store"},
    "send": {
        "errors",
        "config",
        "dburl",
        "fsutil",
        "issue",
        "render",
        "mail",
        "audience",
        "store",
    },
    "web": {"errors", "config", "fsutil", "issue", "render", "mail", "audience", "store", "send"},
    "cli": {
        "errors",
        "config",
        "dburl",
        "fsutil",
        "memo",
        "home",
        "issue",
        "render",
        "mail",
        "audience",
        "store",
        "send",
        "web",
        "__init__",
    },
    "__main__": {"cli"},
    "__init__": {"errors"},
}

# Libraries that belong to one place only (a path prefix under composer/).
FENCES = {
    "typer": ("cli.py",),
    "click": (),
    "smtplib": ("mail/transport.py",),
    "sqlite3": ("store/",),
    "psycopg": ("store/postgres.py",),
    "email_validator": ("mail/addresses.py",),
    "starlette": ("web/",),
    "uvicorn": ("web/server.py",),
    "watchfiles": ("web/preview.py",),
    "jinja2": ("render/", "web/"),
    "mjml": ("render/html.py",),
    "premailer": ("render/html.py",),
    "yaml": ("issue/",),
    "pydantic": ("issue/",),
    "markdown_it": ("issue/markdown.py",),
    "dotenv": ("config.py",),
    "babel": ("render/i18n.py",),
    "PIL": ("render/media.py",),
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "composer" and not node.level:
            # ``from composer import memo`` imports the module composer.memo.
            for alias in node.names:
                own = (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()
                found.append((f"composer.{alias.name}" if own else "composer", node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow_and_the_fences(path: Path) -> None:
    part = _part(path)
    rel = str(path.relative_to(PACKAGE))
    problems = []
    for module, line in _imports(path):
        top, _, rest = module.partition(".")
        if top == "composer":
            target = rest.partition(".")[0] or "__init__"
            if target != part and target not in ALLOWED[part]:
                problems.append(f"{rel}:{line}: {part} must not import composer.{target}")
        elif top in FENCES and not rel.startswith(FENCES[top]):
            problems.append(f"{rel}:{line}: {top} belongs in {FENCES[top] or 'no module'}")
    assert problems == []


def test_every_part_has_a_rule() -> None:
    assert {_part(p) for p in SOURCES} == set(ALLOWED)


def test_block_types_are_declared_once_and_derived() -> None:
    assert BLOCK_TYPES == (
        "lead",
        "links",
        "focus",
        "regions",
        "text",
        "callout",
        "button",
        "image",
        "quote",
        "divider",
    )
    assert set(EMPTIERS) == set(BLOCK_TYPES)
    for theme in (REPO / "templates" / "default" / "blocks",):
        assert {p.name.split(".")[0] for p in theme.glob("*.mjml.j2")} == set(BLOCK_TYPES)


def test_sql_lives_in_the_store() -> None:
    keywords = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE")
    outside = [
        f"{p.relative_to(PACKAGE)}"
        for p in SOURCES
        if not str(p.relative_to(PACKAGE)).startswith("store/")
        and any(k in p.read_text(encoding="utf-8") for k in keywords)
    ]
    assert outside == []
