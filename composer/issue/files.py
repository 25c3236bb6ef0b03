"""Where issue files live: ``issues/YYYY-MM-DD.yaml`` in the newsletter's folder.

Resolving what the user typed (a path or a date), listing issues in date
order, and starting the next issue from the latest one (``newsletter new``).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from composer.errors import ComposerError, IssueError
from composer.fsutil import relative, write_atomic
from composer.issue.load import parse_yaml, read_source
from composer.issue.model import BLOCK_TYPES


def resolve_issue_path(spec: str, home: Path) -> Path:
    """``2025-04-16`` or ``issues/2025-04-16.yaml`` -> the issue file's path.

    A path is taken relative to the working folder; a bare date names a file in
    the newsletter's ``issues/`` (wherever the command runs from). Loading a
    path that does not exist reports it, with how to find or start one.
    """
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = home / "issues" / f"{spec}.yaml"
    if candidate.exists() or date_from_name(path) is not None:
        return relative(candidate)
    raise IssueError([f"{spec}: not an issue file nor a date like 2025-04-16"])


def issue_slug(spec: str) -> str:
    """The date of an issue as the delivery log names it, without reading the file."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        return path.stem[:10]
    return spec


_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def is_local(src: str) -> bool:
    """Whether an image ``src`` names a file next to the issue rather than a URL."""
    return bool(src) and not _SCHEME_RE.match(src) and not src.startswith("//")


def issue_files(folder: Path) -> list[Path]:
    """Issue files in ``folder``, oldest first (names start with the date)."""
    return sorted(p for p in folder.glob("*.yaml") if date_from_name(p) is not None)


def date_from_name(path: Path) -> dt.date | None:
    """The date an issue file's name starts with (``2025-04-16.yaml``), if any."""
    try:
        return dt.date.fromisoformat(path.stem[:10])
    except ValueError:
        return None


# --- newsletter new ---------------------------------------------------------


def _empty_story(story: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"headline": "", "url": None, "sources": [], "body": ""}
    if story.get("kicker") is not None:
        out = {"kicker": "", **out}
    return out


def _empty_lead(block: dict[str, Any]) -> dict[str, Any]:
    return {"story": _empty_story(block.get("story") or {})}


def _empty_links(block: dict[str, Any]) -> dict[str, Any]:
    return {"items": []}


def _empty_focus(block: dict[str, Any]) -> dict[str, Any]:
    return {"topics": [{"heading": "", "body": ""}]}


def _empty_regions(block: dict[str, Any]) -> dict[str, Any]:
    regions = []
    for region in block.get("regions") or []:
        kept = {
            k: region[k]
            for k in ("name", "spotlight_label", "other_news_label", "explore")
            if k in region
        }
        if region.get("spotlight") is not None:
            kept["spotlight"] = _empty_story(region["spotlight"])
        kept["other_news"] = []
        regions.append(kept)
    return {"regions": regions}


def _empty_text(block: dict[str, Any]) -> dict[str, Any]:
    return {"body": block.get("body", "")}


def _empty_callout(block: dict[str, Any]) -> dict[str, Any]:
    return {"body": "", **({"tone": block["tone"]} if "tone" in block else {})}


def _empty_button(block: dict[str, Any]) -> dict[str, Any]:
    return {"label": block.get("label", ""), "url": block.get("url", "")}


def _empty_image(block: dict[str, Any]) -> dict[str, Any]:
    return {"image": {"src": "", "alt": ""}}


def _empty_quote(block: dict[str, Any]) -> dict[str, Any]:
    return {"text": ""}


def _empty_divider(block: dict[str, Any]) -> dict[str, Any]:
    return {}


# One emptier per block type; the test suite checks that it covers BLOCK_TYPES.
EMPTIERS = {
    "callout": _empty_callout,
    "button": _empty_button,
    "image": _empty_image,
    "quote": _empty_quote,
    "divider": _empty_divider,
    "lead": _empty_lead,
    "links": _empty_links,
    "focus": _empty_focus,
    "regions": _empty_regions,
    "text": _empty_text,
}


def empty_block(block: dict[str, Any]) -> dict[str, Any]:
    """A section with its structure kept and its stories emptied."""
    kind = block.get("type")
    out = {k: v for k, v in block.items() if k in ("type", "heading")}
    if kind in BLOCK_TYPES:
        out.update(EMPTIERS[str(kind)](block))
    return out


def _empty_edition(overlay: dict[str, Any]) -> dict[str, Any]:
    """An edition's overlay for the next issue: its newsletter and headings kept."""
    out: dict[str, Any] = {"subject": "", "preheader": ""}
    if isinstance(overlay.get("newsletter"), dict):
        out["newsletter"] = overlay["newsletter"]
    sections = overlay.get("sections")
    if isinstance(sections, list):
        out["sections"] = [
            {k: v for k, v in b.items() if k in ("type", "heading", "omit")}
            if isinstance(b, dict)
            else {}
            for b in sections
        ]
    return out


def new_issue(home: Path, date: dt.date | None = None) -> Path:
    """Start the next issue from the latest earlier one's structure, stories emptied.

    The model issue only needs to be readable YAML, not valid: the one a
    previous ``new`` started is not valid until its stories are filled in.
    """
    folder = relative(home / "issues")
    existing = issue_files(folder)
    if date is not None:
        existing = [p for p in existing if (date_from_name(p) or date) < date]
    if not existing:
        raise ComposerError(
            f"{folder}: no earlier issue to start from; copy an example there first"
        )
    model = existing[-1]
    _, data = parse_yaml(read_source(model), model)
    date = date or (date_from_name(model) or dt.date.today()) + dt.timedelta(days=7)
    target = folder / f"{date.isoformat()}.yaml"
    if target.exists():
        raise ComposerError(f"{target} already exists; edit it, or pass another --date")
    fresh = {
        "newsletter": data.get("newsletter", {}),
        "date": date,
        "subject": "",
        "preheader": "",
        "sections": [empty_block(b) for b in data.get("sections", []) if isinstance(b, dict)],
    }
    editions = {
        code: _empty_edition(overlay)
        for code, overlay in (data.get("editions") or {}).items()
        if isinstance(overlay, dict)
    }
    if editions:
        fresh["editions"] = editions
    header = (
        "# yaml-language-server: $schema=../docs/issue.schema.json\n"
        f"# Started from {model.name} by `newsletter new`; fill in the stories.\n"
    )
    try:
        write_atomic(target, (header + dump_yaml(fresh)).encode())
    except OSError as exc:
        raise ComposerError(f"{target}: cannot write: {exc.strerror}") from None
    return target


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML an editor would write: key order kept, multi-line text as blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
