"""The newsletter's folder: finding it, and making a new one (``newsletter init``).

A newsletter's folder holds ``issues/``, its ``.env`` and (once used) its
database and outbox. Commands find it the way git finds a repository: from
``--dir`` or ``NEWSLETTER_HOME`` if given, else the working folder or the
nearest parent that has an ``issues/`` folder or a ``newsletter.db``. Outside
one, commands stop with an error rather than make an empty database somewhere.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ConfigError
from composer.fsutil import relative, write_atomic

_STARTER = Path(__file__).resolve().parent / "starter"
HOME_ENV = "NEWSLETTER_HOME"


def is_newsletter(folder: Path) -> bool:
    return (folder / "issues").is_dir() or (folder / "newsletter.db").is_file()


def find_home(explicit: str | None = None, cwd: Path | None = None) -> Path:
    """The newsletter's folder: ``explicit`` (``--dir``), ``NEWSLETTER_HOME``, or the
    working folder or its nearest parent that is a newsletter's folder."""
    given = explicit or os.environ.get(HOME_ENV, "").strip()
    if given:
        folder = Path(given).expanduser()
        how = "--dir" if explicit else HOME_ENV
        if not folder.is_dir():
            raise ConfigError(
                f"{how} {given}: no such folder; create a newsletter there with "
                f"`newsletter init {given}`"
            )
        if not is_newsletter(folder):
            raise ConfigError(
                f"{how} {given}: not a newsletter's folder (it has no issues/); "
                f"create one with `newsletter init {given}`"
            )
        return folder.resolve()
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if is_newsletter(folder):
            return folder
    raise ConfigError(
        f"{start} is not in a newsletter's folder (no issues/ here or above); "
        "create one with `newsletter init DIR`, or name one with --dir DIR or "
        f"{HOME_ENV}"
    )


@dataclass(frozen=True)
class NewNewsletter:
    folder: Path
    env_file: Path
    first_issue: Path


def _starter(name: str) -> str:
    return (_STARTER / name).read_text(encoding="utf-8")


def init_newsletter(folder: Path, title: str, date: dt.date | None = None) -> NewNewsletter:
    """Create a newsletter in ``folder``: ``.env`` with a fresh secret key (0600),
    ``issues/`` with a first issue to edit, and a ``.gitignore``."""
    if "\n" in title or "\r" in title or not title.strip():
        raise ConfigError("--title must be one line of text, e.g. 'Weekly Update'")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder; choose another name")
    for taken in (".env", "issues", "newsletter.db"):
        if (folder / taken).exists():
            raise ConfigError(
                f"{relative(folder / taken)} already exists: {folder} is already "
                "a newsletter (or something else); choose an empty folder"
            )
    date = date or dt.date.today()
    env_text = _starter("env").replace("{secret}", secrets.token_urlsafe(32))
    issue_text = (
        _starter("issue.yaml")
        .replace("{date}", date.isoformat())
        .replace("{title}", _yaml_string(title.strip()))
    )
    env_file = folder / ".env"
    first = folder / "issues" / f"{date.isoformat()}.yaml"
    try:
        (folder / "issues").mkdir(parents=True)
        write_atomic(first, issue_text.encode())
        write_atomic(folder / ".gitignore", _starter("gitignore").encode())
        write_atomic(env_file, env_text.encode(), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the newsletter: {exc.strerror}") from None
    return NewNewsletter(folder, env_file, first)


def _yaml_string(text: str) -> str:
    """``text`` as a double-quoted YAML scalar (JSON strings are valid YAML)."""
    import json

    return json.dumps(text, ensure_ascii=False)
