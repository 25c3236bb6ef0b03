"""Themes: where a theme's templates are found, and the Jinja environment for one.

A theme is a folder of Jinja-templated MJML: ``issue.mjml.j2``, ``blocks/``
(one partial per section type) and ``partials/``. Templates are looked up,
partial by partial, in:

1. the newsletter's own ``templates/<theme>/`` (what ``newsletter theme copy``
   makes, to restyle),
2. the bundled theme of that name,
3. the bundled ``default`` theme,

so a theme need only contain what it changes. The bundled themes are the
repository's top-level ``templates/`` folder; the wheel ships it inside the
package as ``composer/themes/``.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from functools import lru_cache
from pathlib import Path

import jinja2

from composer.errors import TemplateError
from composer.issue import markdown as md
from composer.render.i18n import long_date
from composer.render.text import text_filters

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent.parent
DEFAULT_THEME = "default"


def bundled_root() -> Path:
    """The bundled themes: inside the installed package, or the source checkout's."""
    shipped = _PACKAGE / "themes"
    if shipped.is_dir():
        return shipped
    return _PACKAGE.parent / "templates"


def bundled_themes() -> list[str]:
    return sorted(p.name for p in bundled_root().iterdir() if p.is_dir())


def own_root(home: Path | None) -> Path | None:
    """The newsletter's own ``templates/`` folder, if it has one."""
    if home is not None and (home / "templates").is_dir():
        return home / "templates"
    return None


def theme_dirs(theme: str, home: Path | None) -> list[Path]:
    """The folders searched for ``theme``'s templates, first match wins."""
    bundled = bundled_root()
    candidates = []
    own = own_root(home)
    if own is not None:
        candidates.append(own / theme)
    candidates.append(bundled / theme)
    if not any(c.is_dir() for c in candidates):
        known = sorted({*bundled_themes(), *(_names(own) if own else [])})
        where = f"{own} or the bundled themes" if own else "the bundled themes"
        raise TemplateError(
            f"theme {theme!r} not found in {where}; known themes: {', '.join(known)}"
        )
    candidates.append(bundled / DEFAULT_THEME)
    dirs: list[Path] = []
    for c in candidates:
        if c.is_dir() and c not in dirs:
            dirs.append(c)
    return dirs


def _names(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir()]


@jinja2.pass_context
def longdate(context: jinja2.runtime.Context, value: object) -> str:
    """A date in the edition's language ('16 de abril de 2025')."""
    edition = context.get("edition")
    if isinstance(value, dt.date) and edition is not None:
        return long_date(value, edition.lang)
    strftime = getattr(value, "strftime", None)
    return str(strftime("%-d %B %Y")) if strftime else str(value)


@lru_cache(maxsize=16)
def _environment(dirs: tuple[Path, ...], cache_dir: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        # HTML (MJML) templates escape what they print; the text part's do not.
        autoescape=lambda name: not (name or "").endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,
        bytecode_cache=_bytecode_cache(cache_dir),
    )
    env.filters["md"] = md.to_html
    env.filters["md_inline"] = md.to_html_inline
    env.filters["longdate"] = longdate
    env.filters.update(text_filters())
    return env


def environment(theme: str, home: Path | None, cache_dir: Path | None = None) -> jinja2.Environment:
    """A cached Jinja environment for ``theme``, autoescaping, ``StrictUndefined``.

    With ``cache_dir``, compiled templates are kept there between processes
    (Jinja checks the source's mtime, so edits are picked up).
    """
    dirs = tuple(theme_dirs(theme, home))
    log.debug("theme %s: %s", theme, " -> ".join(str(d) for d in dirs))
    return _environment(dirs, cache_dir)


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's compiled templates on disk, never an error: with the disk full or
    the folder unreadable, templates are only compiled again (Jinja itself
    raises, which made ``build`` fail on a full disk)."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError as exc:
            log.debug("template cache: cannot read %s: %s", bucket.key, exc)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)  # removes its temporary file if it fails
        except OSError as exc:
            log.debug("template cache: cannot write %s: %s", bucket.key, exc)


def _bytecode_cache(cache_dir: Path | None) -> jinja2.BytecodeCache | None:
    if cache_dir is None:
        return None
    try:
        (cache_dir / "jinja").mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _BytecodeCache(str(cache_dir / "jinja"))


def copy_theme(name: str, home: Path, as_name: str | None = None) -> Path:
    """Copy bundled theme ``name`` into ``home/templates/<as_name or name>``.

    The copy holds every template the theme uses, its own and those it takes
    from ``default``, so that everything it shows can be restyled in one place.
    """
    bundled = bundled_root()
    if not (bundled / name).is_dir():
        raise TemplateError(
            f"no bundled theme named {name!r}; bundled themes: {', '.join(bundled_themes())}"
        )
    target = home / "templates" / (as_name or name)
    if target.exists():
        raise TemplateError(
            f"{target} already exists; edit it, or copy under another name with --as NAME"
        )
    staging = target.with_name(f".{target.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for source in (bundled / DEFAULT_THEME, bundled / name):
            shutil.copytree(source, staging, dirs_exist_ok=True)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TemplateError(f"{target}: cannot copy the theme: {exc.strerror}") from None
    return target
