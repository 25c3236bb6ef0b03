"""The theme's own words in the reader's language: message catalogs and dates.

The words a theme adds around an issue's text ("View in browser", "Unsubscribe",
"This email was sent to ...", dates) come from gettext catalogs,
``composer/locale/<language>.po``, read with Babel and compiled in memory on
first use. A newsletter replaces any of them with ``newsletter.strings``
(keyed by the English text, as in the catalogs). Dates are formatted by
Babel for the edition's locale.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from composer import memo
from composer.issue.editions import direction
from composer.issue.words import LOCALE_DIR, PLACEHOLDER_RE


@lru_cache(maxsize=32)
def _compiled(language: str) -> Mapping[str, str]:
    """The catalog for ``language`` (``es-MX`` falls back to ``es``): each
    translated message by its English text, as Babel reads the .po; English and
    unknown languages translate nothing. Kept in the build cache's memo under
    the .po file's digest, since reading it with Babel costs a process 13 ms."""
    code = language.replace("-", "_")
    for name in (code, code.split("_")[0].lower()):
        path = LOCALE_DIR / f"{name}.po"
        try:
            data = path.read_bytes()
        except OSError:
            continue
        return memo.recall(
            "catalog",
            f"{name} {hashlib.sha256(data).hexdigest()[:32]}",
            lambda: memo.versions("babel"),
            functools.partial(read_catalog, data, name),
            _is_catalog,
        )
    return {}


def read_catalog(data: bytes, locale: str) -> dict[str, str]:
    """The translations ``gettext`` would find in the .po ``data`` compiled by
    Babel: plain messages (no plural, no context) translated and not fuzzy."""
    from babel.messages.pofile import read_po

    catalog = read_po(io.BytesIO(data), locale=locale)
    return {
        m.id: m.string
        for m in catalog
        if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string
        if not m.fuzzy and m.context is None
    }


def _is_catalog(kept: object) -> bool:
    return isinstance(kept, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in kept.items()
    )


@lru_cache(maxsize=64)
def _babel_locale(language: str) -> Any:
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def long_date(value: dt.date, language: str) -> str:
    """The date as the language writes it in full ("16 April 2025"); kept in
    the build cache's memo, as Babel's locale data costs a process 17 ms."""

    def format_long() -> str:
        from babel.dates import format_date

        return str(format_date(value, "long", locale=_babel_locale(language)))

    return memo.recall(
        "long-date",
        f"{language} {value.isoformat()}",
        lambda: memo.versions("babel"),
        format_long,
        lambda kept: isinstance(kept, str),
    )


def language_name(language: str) -> str:
    """The language's name in itself: 'Español', 'العربية'."""
    name = _babel_locale(language).get_language_name() or language
    return str(name[:1].upper() + name[1:])


@dataclass(frozen=True)
class Words:
    """The theme's words in one edition's language, with the newsletter's own."""

    language: str
    overrides: Mapping[str, str]

    @property
    def dir(self) -> str:
        return direction(self.language)

    def _text(self, message: str) -> tuple[str, bool]:
        """The words for ``message`` and whether they are the newsletter's own."""
        own = self.overrides.get(message)
        if own:
            return own, True
        return _compiled(self.language).get(message, message), False

    def __call__(self, message: str, **values: Any) -> str:
        """The translated ``message`` with its ``%(name)s`` filled in (plain text)."""
        text, _ = self._text(message)
        return _fill(text, {k: str(v) for k, v in values.items()})

    def date(self, value: dt.date) -> str:
        return long_date(value, self.language)

    def markup(self, message: str, **values: Any) -> Markup:
        """For templates: the catalog's words as markup, the newsletter's own words
        and every value escaped."""
        text, own = self._text(message)
        base = escape(text) if own else Markup(text)
        return Markup(_fill(base, {k: escape(v) for k, v in values.items()}))


def _fill(text: str, values: Mapping[str, str]) -> str:
    """``%(name)s`` replaced by its value; a name not given is left as written
    (``check`` reports an override whose names differ from the catalog's)."""
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass(frozen=True)
class Bidi:
    """Language and direction of an edition, or of a section within it."""

    lang: str
    dir: str
    own: bool = False  # differs from the edition's: the HTML must say so

    @property
    def start(self) -> str:
        return "right" if self.dir == "rtl" else "left"

    @property
    def end(self) -> str:
        return "left" if self.dir == "rtl" else "right"

    @property
    def attrs(self) -> Markup:
        """`` lang=".." dir=".."`` for the element around a text whose language or
        direction is its own; `` dir="rtl"`` around every right-to-left text
        (Gmail drops the document's ``dir``, so each text carries its own)."""
        if self.own:
            return Markup(' lang="%s" dir="%s"') % (self.lang, self.dir)
        return Markup(' dir="rtl"') if self.dir == "rtl" else Markup("")

    def box(self, top: int, right: int, bottom: int, left: int) -> str:
        """CSS padding ``top right bottom left`` (px), mirrored right to left."""
        if self.dir == "rtl":
            right, left = left, right
        return " ".join(f"{v}px" if v else "0" for v in (top, right, bottom, left))


def bidi_of(edition: Bidi, lang: str | None, dir: str | None) -> Bidi:
    """A section's ``Bidi``: its own ``dir``, else its ``lang``'s, else the edition's."""
    lang = lang or edition.lang
    dir = dir or (direction(lang) if lang != edition.lang else edition.dir)
    return Bidi(lang, dir, own=(lang, dir) != (edition.lang, edition.dir))
