"""The compose commands' core: build an issue's files, check it, start a new one."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.config import Settings
from composer.errors import ComposerError
from composer.issue import LoadedIssue, issue_files, load_issue
from composer.lint import Finding, check_issue
from composer.message import MessageTemplate, Recipient, personalise
from composer.render import RenderedIssue, render_issue
from composer.tokens import sign

SAMPLE_NAME = "Sample Reader"
SAMPLE_EMAIL = "reader@example.org"


def resolve_issue_path(spec: str, home: Path) -> Path:
    """``2025-04-16`` or ``issues/2025-04-16.yaml`` -> the issue file's path."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = home / "issues" / f"{spec}.yaml"
    if not candidate.exists():
        return path
    return _relative(candidate)


def list_id(settings: Settings, loaded: LoadedIssue) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in loaded.issue.newsletter.title.lower())
    return f"{slug.strip('-') or 'newsletter'}.{settings.mail_domain}"


def view_url(settings: Settings, issue_slug: str) -> str:
    return f"{settings.base_url}/issues/{issue_slug}/"


def unsubscribe_urls(settings: Settings, subscriber_id: int, list_name: str) -> tuple[str, str]:
    """The https one-click URL and the mailto fallback for List-Unsubscribe."""
    token = sign(settings.secret_key.get(), subscriber_id, list_name)
    https = f"{settings.base_url}/unsubscribe/{token}"
    mailto = f"mailto:{settings.unsubscribe_mailbox}?subject=unsubscribe%20{token}"
    return https, mailto


def message_template(settings: Settings, loaded: LoadedIssue, rendered: RenderedIssue,
                     subject_prefix: str = "") -> MessageTemplate:
    return MessageTemplate(
        rendered,
        from_address=settings.from_address,
        list_id=list_id(settings, loaded),
        domain=settings.mail_domain,
        subject_prefix=subject_prefix,
    )


def sample_recipient(settings: Settings, loaded: LoadedIssue) -> Recipient:
    https, mailto = unsubscribe_urls(settings, 0, list_id(settings, loaded))
    return Recipient(key="sample", email=SAMPLE_EMAIL, name=SAMPLE_NAME,
                     unsubscribe_url=https, unsubscribe_mailto=mailto,
                     view_url=view_url(settings, loaded.issue.slug))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class BuildResult:
    rendered: RenderedIssue
    files: list[Path]
    findings: list[Finding]


def build(spec: str, settings: Settings, out: Path | None = None) -> BuildResult:
    """Render an issue and write email.html, email.txt and email.eml (sample subscriber)."""
    loaded = load_issue(resolve_issue_path(spec, settings.home))
    rendered = render_issue(loaded, settings.home, cache_dir=settings.cache_dir)
    recipient = sample_recipient(settings, loaded)
    html, text = personalise(rendered, recipient)
    eml = message_template(settings, loaded, rendered).build(recipient)
    out = out or _relative(settings.home / "build" / loaded.issue.slug)
    files = [out / "email.html", out / "email.txt", out / "email.eml"]
    try:
        for path, data in zip(files, (html.encode(), text.encode(), eml), strict=True):
            write_atomic(path, data)
    except OSError as exc:
        raise ComposerError(f"{out}: cannot write the build: {exc.strerror}") from None
    return BuildResult(rendered, files, check_issue(loaded, rendered))


def check(spec: str, settings: Settings) -> tuple[LoadedIssue, RenderedIssue, list[Finding]]:
    """Load, render and lint an issue."""
    loaded = load_issue(resolve_issue_path(spec, settings.home))
    rendered = render_issue(loaded, settings.home, cache_dir=settings.cache_dir)
    return loaded, rendered, check_issue(loaded, rendered)


# --- newsletter new ---------------------------------------------------------

def _empty_story(story: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"headline": "", "url": None, "sources": [], "body": ""}
    if story.get("kicker") is not None:
        out = {"kicker": "", **out}
    return out


def _empty_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    out = {k: v for k, v in block.items() if k in ("type", "heading")}
    if kind == "lead":
        out["story"] = _empty_story(block.get("story") or {})
    elif kind == "links":
        out["items"] = []
    elif kind == "focus":
        out["topics"] = [{"heading": "", "body": ""}]
    elif kind == "regions":
        regions = []
        for region in block.get("regions") or []:
            kept = {k: region[k] for k in ("name", "spotlight_label", "other_news_label", "explore")
                    if k in region}
            if region.get("spotlight") is not None:
                kept["spotlight"] = _empty_story(region["spotlight"])
            kept["other_news"] = []
            regions.append(kept)
        out["regions"] = regions
    elif kind == "text":
        out["body"] = block.get("body", "")
    return out


def _relative(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def new_issue(settings: Settings, date: dt.date | None = None) -> Path:
    """Start the next issue from the latest earlier one's structure, stories emptied.

    The model issue only needs to be readable YAML, not valid: the one a
    previous ``new`` started is not valid until its stories are filled in.
    """
    from composer.issue import date_from_name, parse_yaml, read_source

    folder = _relative(settings.home / "issues")
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
        "sections": [_empty_block(b) for b in data.get("sections", []) if isinstance(b, dict)],
    }
    header = (f"# yaml-language-server: $schema=../docs/issue.schema.json\n"
              f"# Started from {model.name} by `newsletter new`; fill in the stories.\n")
    write_atomic(target, (header + _dump_yaml(fresh)).encode())
    return target


def _dump_yaml(data: dict[str, Any]) -> str:
    """YAML an editor would write: key order kept, multi-line text as blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
