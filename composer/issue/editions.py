"""Editions: one issue in several languages, in one issue file.

The main edition is the issue as written, in ``newsletter.language``. Each
entry of ``editions:`` is another language's edition, written as an overlay
on the main one: it gives only what differs (the translated texts, a URL of
the translated page), and everything it leaves out is shared.

- A mapping merges key by key (``newsletter:``, a story, a footer).
- A list of mappings merges item by item, by position (``sections``, a
  block's ``items``, ``topics``, ``regions``), so a translator writes the same
  structure with only the texts.
- An item with a ``type`` other than the main edition's block at that position
  replaces that block; items past the end of the main list are added; an item
  ``{omit: true}`` leaves that block out of this edition.
- A list of plain values (``sources``, ``companies``) is replaced whole.

``check`` then reports every text of one edition that another lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

LANGUAGE_RE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")
# What an edition may change; the date, the theme and the rest are the issue's.
EDITION_KEYS = ("subject", "preheader", "headline", "newsletter", "sections")
OMIT = "omit"

# Scripts written right to left (ISO 639 codes, the primary subtag).
_RTL = {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "syr", "ug", "ur", "yi"}
# A script subtag decides over the language: ``az-Arab`` is RTL, ``ku-Latn`` is not.
_RTL_SCRIPTS = {"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg", "mand", "samr"}


def primary(code: str) -> str:
    return code.split("-", 1)[0].lower()


def is_rtl(code: str) -> bool:
    """Whether text in language ``code`` (a BCP 47 tag) runs right to left."""
    subtags = code.lower().split("-")
    for sub in subtags[1:]:
        if len(sub) == 4:
            return sub in _RTL_SCRIPTS
    return subtags[0] in _RTL


def direction(code: str) -> str:
    return "rtl" if is_rtl(code) else "ltr"


def choose(language: str, codes: Iterable[str], main: str) -> str:
    """The edition for a reader of ``language``: the same tag, else the same
    language (``es-MX`` reads ``es``; ``pt`` reads ``pt-BR``), else the main one."""
    wanted = language.strip().replace("_", "-").lower()
    if not wanted:
        return main
    codes = list(codes)
    for code in codes:
        if code.lower() == wanted:
            return code
    for code in codes:
        if primary(code) == primary(wanted):
            return code
    return main


Path = tuple[int | str, ...]
# Where an item of a merged list came from, for lists an ``omit`` shortened:
# (path of the list in the merged data) -> position in the edition's list.
Positions = dict[Path, list[int]]


def merge(base: Any, overlay: Any, moved: Positions | None = None, at: Path = ()) -> Any:
    """``base`` with ``overlay`` laid over it (see the module's rules). ``moved``
    collects the positions of items that an ``omit`` before them moved."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value, moved, (*at, key)) if key in base else value
        return out
    if isinstance(base, list) and isinstance(overlay, list):
        if not any(isinstance(v, Mapping) for v in (*base, *overlay)):
            return overlay
        merged: list[Any] = []
        came_from: list[int] = []
        for i, item in enumerate(overlay):
            if isinstance(item, Mapping) and item.get(OMIT) is True and len(item) == 1:
                continue
            if i < len(base) and _same_kind(base[i], item):
                merged.append(merge(base[i], item, moved, (*at, len(merged))))
            else:
                merged.append(item)
            came_from.append(i)
        merged.extend(base[len(overlay) :])
        came_from.extend(range(len(overlay), len(base)))
        if moved is not None and came_from != list(range(len(came_from))):
            moved[at] = came_from
        return merged
    return overlay


def unmoved(loc: Path, moved: Positions) -> Path:
    """``loc`` in the merged data as a path in the edition's own lists."""
    out: list[int | str] = []
    merged: Path = ()
    for part in loc:
        if isinstance(part, int) and merged in moved and 0 <= part < len(moved[merged]):
            out.append(moved[merged][part])
        else:
            out.append(part)
        merged = (*merged, part)
    return tuple(out)


def _same_kind(base: Any, item: Any) -> bool:
    if not (isinstance(base, Mapping) and isinstance(item, Mapping)):
        return False
    return "type" not in item or item.get("type") == base.get("type")


def edition_data(
    main: Mapping[str, Any], code: str, overlay: Mapping[str, Any], moved: Positions | None = None
) -> dict[str, Any]:
    """The whole issue data of edition ``code``: main merged with its overlay."""
    data = merge({k: v for k, v in main.items() if k != "editions"}, overlay, moved)
    newsletter = data.get("newsletter")
    if isinstance(newsletter, Mapping):
        data["newsletter"] = {**newsletter, "language": code}
    return dict(data)
