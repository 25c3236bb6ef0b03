"""MJML -> HTML with MRML, then CSS inlined with premailer (never fetching anything)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

from composer.errors import TemplateError

_DOCTYPE_RE = re.compile(r"^\s*<!doctype html>", re.IGNORECASE)
_INLINE_VERSION = "premailer-3.10/2"  # bump when inline_css's options change


def compile_mjml(source: str, theme: str) -> str:
    from mjml import mjml2html

    try:
        html: str = mjml2html(source)
    except Exception as exc:  # MRML raises plain exceptions with its parser's message
        raise TemplateError(f"theme {theme!r} produced invalid MJML: {exc}") from None
    return html


_DIRECTED_TAG_RE = re.compile(r"<(?:div|td|table)\b[^>]*?direction:(rtl|ltr)[^>]*>")


def mark_directions(html: str) -> str:
    """Where a section or column runs right to left, say so with ``dir`` too.

    MRML writes ``direction:rtl`` into the style of a section or column given
    ``direction="rtl"``, but keeps a column's ``text-align:left``. Gmail drops
    the document's own ``dir``, so every block that has a direction carries
    the attribute, and its alignment is mirrored."""
    if "direction:rtl" not in html:
        return html

    def mark(m: re.Match[str]) -> str:
        tag, way = m.group(0), m.group(1)
        if " dir=" in tag:
            return tag
        if way == "rtl":
            tag = tag.replace("text-align:left;direction:rtl", "text-align:right;direction:rtl")
        return tag[:-1] + f' dir="{way}">'

    return _DIRECTED_TAG_RE.sub(mark, html)


_STYLE_BLOCK_RE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)
_SELECTOR_CLASS_RE = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
_CLASS_ATTR_RE = re.compile(r' class="([^"]*)"')


def prune_classes(html: str) -> str:
    """Class names that no remaining ``<style>`` mentions, removed.

    Once premailer has inlined the styles, most classes only cost bytes (the
    seed issue is near Gmail's clip); those the head's media queries and dark
    mode rules use stay, and so do the themes' structural ``nl-*`` names."""
    used = {m for block in _STYLE_BLOCK_RE.findall(html) for m in _SELECTOR_CLASS_RE.findall(block)}

    def keep(m: re.Match[str]) -> str:
        names = [n for n in m.group(1).split() if n in used or n.startswith("nl-")]
        return f' class="{" ".join(names)}"' if names else ""

    return _CLASS_ATTR_RE.sub(keep, html)


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
    out: str = prune_classes(inliner.transform())
    if not out.lstrip().startswith("<!DOCTYPE"):
        out = "<!DOCTYPE html>\n" + out
    return out
