"""`newsletter init` makes a newsletter's folder that works at once; `theme copy` gives
an editable copy of a bundled theme."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.helpers import run


def test_init_makes_a_working_newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_HOME")
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    monkeypatch.chdir(tmp_path)
    result = run("init", "news", "--title", "Weekly: Café & Co")
    assert result.exit_code == 0, result.stderr
    home = tmp_path / "news"
    issue = next((home / "issues").glob("*.yaml"))
    assert result.stdout.startswith("created a newsletter in news/:\n")
    assert f"  cd news\n  newsletter build {issue.stem}" in result.stdout
    env = (home / ".env").read_text()
    assert stat.S_IMODE((home / ".env").stat().st_mode) == 0o600
    key = next(line for line in env.splitlines() if line.startswith("NEWSLETTER_SECRET_KEY="))
    assert len(key.partition("=")[2]) >= 40
    assert ".env" in (home / ".gitignore").read_text().splitlines()
    monkeypatch.chdir(home)
    checked = run("check", issue.stem)
    assert checked.exit_code == 0 and "0 error(s), 0 warning(s)" in checked.stdout
    assert run("build", issue.stem).exit_code == 0
    assert "Weekly: Café &amp; Co" in (home / "build" / issue.stem / "email.html").read_text()
    # The secret key comes from the new .env (no development-key warning on send).
    assert run("subscribers", "add", "a@example.org").exit_code == 0
    sent = run("send", issue.stem, "--yes")
    assert sent.exit_code == 0 and "development key" not in sent.stderr
    # A second init there, or in a folder that is one, is refused; nothing is touched.
    again = run("init", ".")
    assert again.exit_code == 1 and "already a newsletter" in again.stderr
    assert (home / ".env").read_text() == env
    other = run("init", str(tmp_path / "other"))
    other_key = (tmp_path / "other" / ".env").read_text()
    assert other.exit_code == 0 and key not in other_key


def test_theme_copy_and_list(newsletter_home: Path) -> None:
    result = run("theme", "copy", "minimal")
    assert result.exit_code == 0, result.stderr
    copy = newsletter_home / "templates" / "minimal"
    assert "Georgia" in (copy / "partials" / "tokens.j2").read_text()  # minimal's own tokens
    assert (copy / "blocks" / "lead.mjml.j2").is_file()  # taken from default too
    again = run("theme", "copy", "minimal")
    assert again.exit_code == 1 and "already exists" in again.stderr
    listed = run("theme", "list").stdout.splitlines()
    assert "default\tbundled" in listed and f"minimal\t{copy}" in listed
    # The copy is what renders: edit its tokens (one file), and the build shows it.
    tokens = copy / "partials" / "tokens.j2"
    tokens.write_text(tokens.read_text().replace('accent = "#0b3d91"', 'accent = "#00773c"'))
    issue = newsletter_home / "issues" / "2025-04-16.yaml"
    issue.write_text(issue.read_text().replace("theme: default", "theme: minimal"))
    assert run("build", "2025-04-16").exit_code == 0
    html = (newsletter_home / "build" / "2025-04-16" / "email.html").read_text()
    assert "#00773c" in html and "#0b3d91" not in html
