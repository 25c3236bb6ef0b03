"""The README's command table stays in step with the CLI's own help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from composer.cli import app

pytestmark = pytest.mark.no_database

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _commands() -> dict[str, str]:
    """'build' -> first line of its help, 'subscribers import' -> ..., from the app."""
    group = typer.main.get_command(app)
    out: dict[str, str] = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            for sub_name, sub in cmd.commands.items():
                out[f"{name} {sub_name}"] = (sub.help or "").splitlines()[0]
        else:
            out[name] = (cmd.help or "").splitlines()[0]
    return out


def test_every_command_is_in_the_readme_with_its_help() -> None:
    rows = dict(
        re.findall(
            r"^\| `newsletter ([a-z -]+?)(?: [A-Z\[].*?)?` \| (.*) \|$", README, re.MULTILINE
        )
    )
    assert rows == _commands()


def test_the_readme_gives_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)
    assert blocks[0].startswith("python3 -m venv .venv && .venv/bin/pip install -q -e . && ")
    assert "newsletter send 2025-04-16 --yes" in blocks[0]
    assert blocks[1] == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
        ".venv/bin/python -m pytest && NEWSLETTER_TEST_BACKEND=postgresql "
        ".venv/bin/python -m pytest"
    )
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert blocks[1] in ci


def test_the_main_job_runs_on_the_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command after its install step, in a fresh folder."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    for folder in ("issues", "examples"):
        shutil.copytree(repo / folder, tmp_path / folder)
    block = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)[0]
    steps = block.split(" && ")[2:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "NEWSLETTER_"))}
    outputs = []
    for step in steps:
        argv = step.split()
        assert argv[0] == ".venv/bin/newsletter"
        result = subprocess.run(
            [sys.executable, "-m", "composer", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "25 added" in outputs[0]
    assert "this run: 25 sent" in outputs[2]
    assert f"messages are in the local outbox: {tmp_path / 'outbox' / 'new'}" in outputs[2]
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 25
    assert (tmp_path / "archive" / "issues" / "2025-04-16" / "index.html").exists()


def test_the_layout_section_matches_the_package() -> None:
    """Every package and module of composer/ is in the README's layout table, and
    every path the table names exists."""
    section = README.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(composer/[\w/.]+|templates/)`", section))
    package = REPO / "composer"
    entries = {
        f"composer/{p.name}/" if p.is_dir() else f"composer/{p.name}"
        for p in package.iterdir()
        if p.name not in ("__pycache__", "__init__.py", "__main__.py", "py.typed", "starter")
    }
    assert entries <= named, entries - named
    for path in named - {"composer/themes/"}:  # the themes' place in the wheel
        assert (REPO / path).exists(), path
    for folder in (p for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"):
        for module in folder.glob("*.py"):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in section, module
