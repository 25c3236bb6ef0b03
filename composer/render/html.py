"""MJML -> HTML with MRML, then CSS inlined with premailer (never fetching anything)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any

from composer.errors import TemplateError
from composer.fsutil import write_atomic
from composer.memo import text

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


class _LateCssutils(types.ModuleType):
    """Stands in for ``cssutils`` inside premailer until premailer first uses it.

    premailer imports cssutils at module level (30 ms here: its grammar, and
    urllib and ssl for fetching), but with ``_MEMO`` warm an edited issue's
    transform never calls it. On the first use of any of its names, the real
    cssutils is imported, told to log only what is critical (its parser warns
    about every ``mso-`` property), and put in premailer's modules in place of
    this stand-in."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_cssutils(), name)


_PREMAILER_MODULES = ("premailer.premailer", "premailer.merge_style")


def _real_cssutils() -> Any:
    import cssutils

    cssutils.log.setLevel(logging.CRITICAL)
    for name in _PREMAILER_MODULES:
        module = sys.modules.get(name)
        if module is not None and isinstance(getattr(module, "cssutils", None), _LateCssutils):
            module.cssutils = cssutils  # type: ignore[attr-defined]
    return cssutils


def _import_premailer() -> Any:
    if "premailer" not in sys.modules:
        stand_ins = {
            "requests": _NoNetwork("requests"),
            "cssutils": _LateCssutils("cssutils"),
        }
        stand_ins = {k: v for k, v in stand_ins.items() if k not in sys.modules}
        sys.modules.update(stand_ins)
        try:
            import premailer  # noqa: F401
        finally:
            for name in stand_ins:
                del sys.modules[name]
    from premailer import Premailer

    if "cssutils" in sys.modules:  # the real one, imported before premailer
        _real_cssutils()
    return Premailer


_MEMO_LIMIT = 20_000  # entries of each kind; past it the memo starts afresh


class _StyleMemo:
    """What premailer works out from CSS text, kept between processes.

    A process's first premailer transform costs ~50 ms more than the next:
    cssutils compiles its tokenizer and property grammar, cssselect translates
    each selector to XPath, every style text is parsed. An edited issue changes
    none of those inputs (the theme's stylesheet, its selectors, the style
    attributes MRML writes), so this memo keeps premailer's own results for
    them: each ``<style>`` block's rules (and what stays in the head), each
    selector's XPath, each style text's declarations. For an input it has seen,
    the first transform in a process skips cssutils and cssselect; the HTML is
    byte for byte what premailer alone makes (a test compares). Saved as JSON
    next to the inline cache; an unreadable or odd file is ignored.
    """

    def __init__(self) -> None:
        # A block's rules without their indexes, and its leftovers (None: none).
        self.rules: dict[str, tuple[list[tuple[tuple[int, int, int, int], str, str]], str | None]]
        self.rules = {}
        self.xpaths: dict[str, str] = {}
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        self.selectors: dict[str, Any] = {}  # compiled XPath objects, this process only
        self.loaded: set[Path] = set()
        self.learned = 0  # entries added in this process
        self.synced: dict[Path, int] = {}  # ``learned`` when a file last held it all
        # Several threads may render at once (``serve``): one saves while another learns.
        self._lock = threading.Lock()

    @staticmethod
    @functools.cache
    def stamp() -> str:
        """The versions whose results the memo holds."""
        from importlib.metadata import version

        _import_premailer()  # first, so that it comes without requests
        import cssselect
        import premailer
        from lxml import etree

        return (
            f"{_INLINE_VERSION} premailer-{premailer.__version__} cssutils-{version('cssutils')} "
            f"cssselect-{cssselect.__version__} lxml-{etree.__version__}"
        )

    def load(self, path: Path) -> None:
        if path in self.loaded:
            return
        self.loaded.add(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["stamp"] != self.stamp():
                return
            rules = {
                text(css): (
                    [(_specificity(spec), text(sel), text(bulk)) for spec, sel, bulk in found],
                    None if head is None else text(head),
                )
                for css, (found, head) in data["rules"].items()
            }
            xpaths = {text(css): text(path) for css, path in data["xpaths"].items()}
            pairs = {
                text(css): [(text(k), text(v)) for k, v in found]
                for css, found in data["pairs"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return  # the memo is only ever a shortcut
        with self._lock:
            if all(
                mine.keys() <= theirs.keys()
                for mine, theirs in (
                    (self.rules, rules),
                    (self.xpaths, xpaths),
                    (self.pairs, pairs),
                )
            ):
                self.synced[path] = self.learned  # nothing to add to this file
            self.rules = {**rules, **self.rules}
            self.xpaths = {**xpaths, **self.xpaths}
            self.pairs = {**pairs, **self.pairs}

    def save(self, path: Path) -> None:
        with self._lock:
            if self.synced.get(path) == self.learned:
                return
            self.synced[path] = self.learned
            data = {
                "stamp": self.stamp(),
                "rules": dict(self.rules),
                "xpaths": dict(self.xpaths),
                "pairs": dict(self.pairs),
            }
        with contextlib.suppress(OSError):
            write_atomic(path, json.dumps(data, ensure_ascii=False).encode(), durable=False)

    def remember(self, table: dict[str, Any], key: str, value: Any) -> None:
        with self._lock:
            if len(table) >= _MEMO_LIMIT:
                table.clear()
            table[key] = value
            self.learned += 1


def _specificity(value: Any) -> tuple[int, int, int, int]:
    if not (isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value)):
        raise TypeError("not a specificity")
    return (value[0], value[1], value[2], value[3])


_MEMO = _StyleMemo()
_MEMO_FILE = "premailer-memo.json"


class _HeadStyles:
    """A ``<style>`` block's leftovers (media queries, pseudo-classes) as premailer
    wrote them, standing in for the cssutils rules they came from."""

    def __init__(self, text: str) -> None:
        self.text = text


@functools.cache
def _premailer_class() -> Any:
    """premailer's ``Premailer``, its results for CSS text looked up in ``_MEMO``.

    Only premailer's pure functions of text are memoised: how a ``<style>``
    block reads (``_parse_style_rules``), a selector's XPath
    (``_create_cssselector``) and a style text's declarations
    (``csstext_to_pairs``). Should a premailer release rename any of them,
    premailer is used as it is."""
    Premailer = _import_premailer()
    import premailer.merge_style as merge_style
    import premailer.premailer as module
    from lxml import etree

    names = ("_parse_style_rules", "_css_rules_to_string")
    if not (
        all(hasattr(Premailer, n) for n in names)
        and hasattr(module, "_create_cssselector")
        and getattr(module, "csstext_to_pairs", None) is getattr(merge_style, "csstext_to_pairs", 0)
        and hasattr(merge_style.csstext_to_pairs, "_lock")
    ):
        return Premailer
    their_pairs, their_selector = merge_style.csstext_to_pairs, module._create_cssselector

    def csstext_to_pairs(text: str, validate: bool = True) -> list[tuple[str, str]]:
        key = f"{int(validate)}{text}"
        found = _MEMO.pairs.get(key)
        if found is None:
            found = [(k, v) for k, v in their_pairs(text, validate=validate)]
            _MEMO.remember(_MEMO.pairs, key, found)
        return found

    def create_cssselector(selector: str) -> Any:
        compiled = _MEMO.selectors.get(selector)
        if compiled is None:
            path = _MEMO.xpaths.get(selector)
            if path is None:
                compiled = their_selector(selector)
                _MEMO.remember(_MEMO.xpaths, selector, compiled.path)
            else:
                compiled = etree.XPath(path)
            _MEMO.selectors[selector] = compiled
        return compiled

    csstext_to_pairs._lock = their_pairs._lock  # type: ignore[attr-defined]  # premailer's own
    merge_style.csstext_to_pairs = module.csstext_to_pairs = csstext_to_pairs
    module._create_cssselector = create_cssselector

    class MemoPremailer(Premailer):  # type: ignore[misc,valid-type]
        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
            found = _MEMO.rules.get(css_body)
            if found is None:
                rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
                head = super()._css_rules_to_string(leftover) if leftover else None
                found = ([(spec[:4], sel, bulk) for spec, sel, bulk in rules], head)
                _MEMO.remember(_MEMO.rules, css_body, found)
            rules, head = found
            # The specificity ends with the block's index and the rule's own.
            numbered = [
                ((*s, ruleset_index, i), sel, bulk) for i, (s, sel, bulk) in enumerate(rules)
            ]
            return numbered, ([] if head is None else [_HeadStyles(head)])

        def _css_rules_to_string(self, rules: list[Any]) -> str:
            if len(rules) == 1 and isinstance(rules[0], _HeadStyles):
                return rules[0].text
            text: str = super()._css_rules_to_string(rules)
            return text

    return MemoPremailer


def _cache_path(cache_dir: Path, html: str) -> Path:
    key = hashlib.sha256(f"{_INLINE_VERSION}\x00{html}".encode()).hexdigest()
    return cache_dir / f"inline-{key[:40]}.html"


def inline_css_cached(html: str, cache_dir: Path | None) -> str:
    """``inline_css`` with an on-disk cache keyed by the exact input.

    A rebuild of an unchanged issue reads the result instead of importing
    premailer at all; an edited one is inlined with ``_MEMO`` warm. The cache
    keeps the ``KEEP_INLINED`` latest results (an editor who builds after every
    edit would otherwise fill the disk). A broken or unwritable cache is never
    an error.
    """
    if cache_dir is None:
        return inline_css(html)
    path = _cache_path(cache_dir, html)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    _MEMO.load(cache_dir / _MEMO_FILE)
    out = inline_css(html)
    _MEMO.save(cache_dir / _MEMO_FILE)
    with contextlib.suppress(OSError):
        write_atomic(path, out.encode(), durable=False)
        _forget_oldest(cache_dir)
    return out


KEEP_INLINED = 64


def _forget_oldest(cache_dir: Path) -> None:
    kept = list(cache_dir.glob("inline-*.html"))
    if len(kept) <= KEEP_INLINED:
        return
    by_age = sorted(kept, key=lambda p: p.stat().st_mtime)
    for old in by_age[: len(kept) - KEEP_INLINED]:
        old.unlink(missing_ok=True)


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
        allow_network=False,  # (cssutils logs only what is critical: ``_real_cssutils``)
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
