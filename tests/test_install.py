"""A wheel installs anywhere: built from the repository's files, installed into a fresh
venv (not editable), it makes a newsletter in an empty folder and builds its first issue
with the themes it carries inside the package."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.no_database


def _sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; the dependencies come from the test venv
    through a path entry (no download), never our package itself."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    source.mkdir()
    for name in ("composer", "templates"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = work / "dist"
    _sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        dist,
        ".",
        cwd=source,
    )
    wheel = next(dist.glob("newsletter_composer-*.whl"))
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _sh(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        wheel,
        cwd=work,
    )
    new_site = Path(
        _sh(python, "-c", "import site; print(site.getsitepackages()[0])", cwd=work).strip()
    )
    (new_site / "deps-from-test-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SMTP_", "PYTHON"))
    }


def test_the_wheel_carries_the_themes_and_builds_in_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    newsletter = installed / "bin" / "newsletter"
    where = _sh(
        installed / "bin" / "python",
        "-c",
        "import composer; print(composer.__file__)",
        cwd=tmp_path,
    )
    assert where.startswith(str(installed)), where  # the wheel, not the source tree
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _sh(newsletter, "init", "news", "--title", "Actualización Semanal", cwd=empty, env=_env())
    assert "created a newsletter in news/" in out
    home = empty / "news"
    first = next((home / "issues").glob("*.yaml")).stem
    built = _sh(newsletter, "build", first, cwd=home, env=_env())
    assert f"wrote build/{first}/email.html" in built
    html = (home / "build" / first / "email.html").read_text()
    assert "The headline of your lead story" in html and "Actualización Semanal" in html
    # From a sub-folder, the newsletter is found by walking up, and nothing is made there.
    checked = _sh(newsletter, "check", first, cwd=home / "issues", env=_env())
    assert "0 error(s)" in checked
    assert sorted(p.name for p in (home / "issues").iterdir()) == [f"{first}.yaml"]


def test_an_own_theme_falls_back_partial_by_partial(installed: Path, tmp_path: Path) -> None:
    newsletter = installed / "bin" / "newsletter"
    _sh(newsletter, "init", "news", cwd=tmp_path, env=_env())
    home = tmp_path / "news"
    issue = next((home / "issues").glob("*.yaml"))
    # An own "minimal" with only a header: the rest comes from the bundled minimal
    # (its style) and then the bundled default (the blocks).
    header = home / "templates" / "minimal" / "partials" / "header.mjml.j2"
    header.parent.mkdir(parents=True)
    header.write_text(
        "<mj-section><mj-column><mj-text><p>OWN HEADER</p></mj-text></mj-column></mj-section>\n"
    )
    issue.write_text(issue.read_text().replace("theme: default", "theme: minimal"))
    _sh(newsletter, "build", issue.stem, cwd=home, env=_env())
    html = (home / "build" / issue.stem / "email.html").read_text()
    assert "OWN HEADER" in html  # own partial
    assert "Georgia" in html  # the bundled minimal theme's style
    assert "The headline of your lead story" in html  # the bundled default's lead block
    # theme copy gives an editable copy of everything a theme uses.
    copied = _sh(newsletter, "theme", "copy", "default", "--as", "house", cwd=home, env=_env())
    assert "templates/house" in copied
    assert (home / "templates" / "house" / "blocks" / "lead.mjml.j2").is_file()
