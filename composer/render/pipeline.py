"""Issue -> RenderedIssue, once per issue: Jinja -> MJML -> HTML -> inlined CSS.

The result holds the email HTML and text with placeholder tokens in place of
per-subscriber values (``fields``); sending fills them in without rendering
again. ``web=True`` renders the archive's version, with nothing personal in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from composer import markdown as md
from composer.errors import TemplateError
from composer.fields import Placeholders
from composer.issue import LoadedIssue
from composer.model import Issue
from composer.text import render_text

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_DOCTYPE_RE = re.compile(r"^\s*<!doctype html>", re.IGNORECASE)
# MRML 1.4 rejects spaces-only text (no newline) just before </mj-head>.
_HEAD_END_RE = re.compile(r"[ \t]+(?=</mj-head>)")
GMAIL_CLIP_BYTES = 102 * 1024
_INLINE_VERSION = "premailer-3.10/1"  # bump when inline_css's options change


@dataclass(frozen=True)
class RenderedIssue:
    """One issue rendered for email: HTML and text with placeholder tokens."""

    issue: Issue
    path: Path
    html: str
    text: str
    mjml: str

    @property
    def subject(self) -> str:
        return self.issue.subject

    @property
    def digest(self) -> str:
        """Fingerprint of what subscribers get; changes when the issue is edited."""
        h = hashlib.sha256()
        for part in (self.subject, self.html, self.text):
            h.update(part.encode())
            h.update(b"\x00")
        return h.hexdigest()[:32]

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode())


def templates_root(home: Path | None = None) -> Path:
    """The newsletter's own ``templates/`` if it has one, else the bundled themes."""
    if home is not None and (home / "templates").is_dir():
        return home / "templates"
    return PACKAGE_ROOT / "templates"


@lru_cache(maxsize=16)
def environment(root: Path, theme: str, cache_dir: Path | None = None) -> jinja2.Environment:
    """A cached environment per theme; a theme falls back to ``default`` for
    partials it does not define, so a small theme overrides only what differs.
    With ``cache_dir``, compiled templates are kept there between processes
    (Jinja checks the source's mtime, so edits are picked up)."""
    theme_dir = root / theme
    if not theme_dir.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
        raise TemplateError(f"theme {theme!r} not found in {root}; known themes: {known}")
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(theme_dir)]
    if theme != "default" and (root / "default").is_dir():
        loaders.append(jinja2.FileSystemLoader(root / "default"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,
        bytecode_cache=_bytecode_cache(cache_dir),
    )
    env.filters["md"] = md.to_html
    env.filters["md_inline"] = md.to_html_inline
    env.filters["longdate"] = lambda d: d.strftime("%-d %B %Y")
    return env


def _bytecode_cache(cache_dir: Path | None) -> jinja2.BytecodeCache | None:
    if cache_dir is None:
        return None
    try:
        (cache_dir / "jinja").mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(cache_dir / "jinja"))


def _template_location(exc: BaseException) -> str:
    """``file:line`` of the innermost template frame of a Jinja error."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return "template"


def render_mjml(issue: Issue, root: Path, web: bool = False,
                cache_dir: Path | None = None) -> str:
    env = environment(root, issue.theme_name, cache_dir)
    try:
        template = env.get_template("issue.mjml.j2")
        source = template.render(issue=issue, subscriber=Placeholders(), web=web)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"{root / issue.theme_name}: template {exc.name!r} is missing; "
            "every theme needs issue.mjml.j2 and a blocks/ partial per section type"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_template_location(exc)}: {exc.message}") from None
    return _HEAD_END_RE.sub("\n", source)


def compile_mjml(source: str, theme: str) -> str:
    from mjml import mjml2html

    try:
        html: str = mjml2html(source)
    except Exception as exc:  # MRML raises plain exceptions with its parser's message
        raise TemplateError(f"theme {theme!r} produced invalid MJML: {exc}") from None
    return html


class _NoNetwork(types.ModuleType):
    """Stands in for ``requests`` inside premailer: any use raises.

    premailer imports requests at module level (~140 ms here) only to fetch
    remote stylesheets, which we never allow (``allow_network=False``). With
    this stand-in the import is free, and premailer provably cannot fetch.
    """

    def __getattr__(self, name: str) -> Any:
        raise TemplateError("premailer tried to use the network; it is disabled")


def _premailer_class() -> Any:
    if "premailer" not in sys.modules and "requests" not in sys.modules:
        sys.modules["requests"] = _NoNetwork("requests")
        try:
            from premailer import Premailer
        finally:
            del sys.modules["requests"]
        return Premailer
    from premailer import Premailer

    return Premailer


def _cache_path(cache_dir: Path, html: str) -> Path:
    key = hashlib.sha256(f"{_INLINE_VERSION}\x00{html}".encode()).hexdigest()
    return cache_dir / f"inline-{key[:40]}.html"


def inline_css_cached(html: str, cache_dir: Path | None) -> str:
    """``inline_css`` with an on-disk cache keyed by the exact input.

    The first premailer transform in a process costs ~0.4 s (its import and
    cssutils compiling its tokenizer); a rebuild of an unchanged issue reads
    the result instead. A broken or unwritable cache is never an error.
    """
    if cache_dir is None:
        return inline_css(html)
    path = _cache_path(cache_dir, html)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    out = inline_css(html)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(out, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def inline_css(html: str) -> str:
    """Inline the CSS with premailer, never fetching anything, keeping @media rules.

    MRML's reset block (``#outlook a``, ``table, td {mso-table-lspace...}``) is
    left as a head ``<style>``: inlined on every table it cost 15 KB of the
    seed issue, pushing it over Gmail's 102 KB clip, and the clients it is for
    (Outlook, Apple Mail) read head styles.
    """
    Premailer = _premailer_class()

    # premailer keeps a doctype only when the input starts with exactly this one.
    html = _DOCTYPE_RE.sub("<!DOCTYPE html>", html, count=1)
    html = html.replace(
        '<style type="text/css">\n#outlook a',
        '<style type="text/css" data-premailer="ignore">\n#outlook a',
        1,
    )
    inliner = Premailer(
        html,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
        remove_classes=False,
        strip_important=False,
        keep_style_tags=False,
        include_star_selectors=False,
    )
    out: str = inliner.transform()
    if not out.lstrip().startswith("<!DOCTYPE"):
        out = "<!DOCTYPE html>\n" + out
    return out


def render_issue(loaded: LoadedIssue, home: Path | None = None, web: bool = False,
                 cache_dir: Path | None = None) -> RenderedIssue:
    issue = loaded.issue
    root = templates_root(home)
    mjml_source = render_mjml(issue, root, web=web, cache_dir=cache_dir)
    html = inline_css_cached(compile_mjml(mjml_source, issue.theme_name), cache_dir)
    text = render_text(issue, Placeholders(), web=web)
    return RenderedIssue(issue=issue, path=loaded.path, html=html, text=text, mjml=mjml_source)
