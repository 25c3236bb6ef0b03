"""The web archive: an index, each issue's web version, and an Atom feed.

The same pages are written as static files by ``newsletter archive`` and
served by ``newsletter serve``. An issue's web version is the email rendered
with ``web=True``: nothing personal in it (no name, no address, no token).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html import escape
from pathlib import Path

import jinja2

from composer.config import Settings
from composer.errors import ComposerError, IssueError
from composer.fsutil import write_atomic
from composer.issue.files import issue_files
from composer.issue.load import load_issue
from composer.issue.model import Issue
from composer.render.pipeline import render_issue
from composer.store.database import Store

SLUG_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_PAGES = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "index.html": """<!DOCTYPE html>
<html lang="{{ language }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}: archive</title>
<link rel="canonical" href="{{ base }}/">
<link rel="alternate" type="application/atom+xml" title="{{ title }}" href="{{ base }}/feed.xml">
<style>
body { font: 17px/1.5 Helvetica, Arial, sans-serif; color: #1f2328; max-width: 42rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; } li { margin: 0 0 1rem; } time { color: #595959; display: block; }
a { color: #a4161a; }
</style>
</head>
<body>
<header><h1>{{ title }}</h1><p>{{ organisation }}: every issue, newest first.
<a href="feed.xml">Atom feed</a></p></header>
<main><ol reversed>
{% for e in entries %}
<li><time datetime="{{ e.slug }}">{{ e.issue.date.strftime("%-d %B %Y") }}</time>
<a href="issues/{{ e.slug }}/index.html">{{ e.issue.subject }}</a><br>{{ e.issue.preheader }}</li>
{% else %}
<li>No issue has been sent yet.</li>
{% endfor %}
</ol></main>
</body>
</html>
""",
        }
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Entry:
    slug: str
    path: Path
    issue: Issue


def sent_slugs(settings: Settings) -> set[str]:
    if not settings.db_path.exists():
        return set()
    with Store(settings.db_path) as store:
        return store.sent_issues()


def entries(settings: Settings, include_unsent: bool = False) -> list[Entry]:
    """Issues for the archive, newest first: the sent ones (or every valid one)."""
    sent = sent_slugs(settings)
    out = []
    for path in issue_files(settings.home / "issues"):
        slug = path.stem[:10]
        if not include_unsent and slug not in sent:
            continue
        try:
            out.append(Entry(slug, path, load_issue(path).issue))
        except IssueError:
            if slug in sent:
                raise
    return sorted(out, key=lambda e: e.slug, reverse=True)


def _base(settings: Settings) -> str:
    return settings.base_url


def index_page(settings: Settings, items: list[Entry]) -> bytes:
    nl = items[0].issue.newsletter if items else None
    return (
        _PAGES.get_template("index.html")
        .render(
            entries=items,
            base=_base(settings),
            title=nl.title if nl else "Newsletter",
            organisation=nl.organisation if nl else "",
            language=nl.language if nl else "en",
        )
        .encode()
    )


def issue_url(settings: Settings, slug: str) -> str:
    return f"{_base(settings)}/issues/{slug}/"


def issue_page(settings: Settings, entry: Entry) -> bytes:
    """The web version: the email without anything personal, with its canonical URL
    and a relative link back to the index (the archive works from disk too)."""
    rendered = render_issue(
        load_issue(entry.path), settings.home, web=True, cache_dir=settings.cache_dir
    )
    html = rendered.html
    canonical = (
        f'<link rel="canonical" href="{escape(issue_url(settings, entry.slug))}">'
        '<link rel="index" href="../../index.html">'
    )
    head_end = html.find("</head>")
    if head_end >= 0:
        html = html[:head_end] + canonical + html[head_end:]
    return html.encode()


def feed(settings: Settings, items: list[Entry]) -> bytes:
    """Atom (RFC 4287), built with ElementTree so that every value is escaped."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    base = _base(settings)
    nl = items[0].issue.newsletter if items else None
    root = ET.Element(f"{{{ns}}}feed")
    ET.SubElement(root, f"{{{ns}}}title").text = nl.title if nl else "Newsletter"
    ET.SubElement(root, f"{{{ns}}}id").text = f"{base}/"
    ET.SubElement(root, f"{{{ns}}}link", href=f"{base}/feed.xml", rel="self")
    ET.SubElement(root, f"{{{ns}}}link", href=f"{base}/", rel="alternate")
    newest = items[0].issue.date if items else dt.date(2000, 1, 1)
    ET.SubElement(root, f"{{{ns}}}updated").text = f"{newest.isoformat()}T00:00:00Z"
    author = ET.SubElement(root, f"{{{ns}}}author")
    ET.SubElement(author, f"{{{ns}}}name").text = nl.organisation if nl else "Newsletter"
    for e in items:
        entry = ET.SubElement(root, f"{{{ns}}}entry")
        url = issue_url(settings, e.slug)
        ET.SubElement(entry, f"{{{ns}}}title").text = e.issue.subject
        ET.SubElement(entry, f"{{{ns}}}id").text = url
        ET.SubElement(entry, f"{{{ns}}}link", href=url, rel="alternate")
        ET.SubElement(entry, f"{{{ns}}}updated").text = f"{e.slug}T00:00:00Z"
        ET.SubElement(entry, f"{{{ns}}}summary").text = e.issue.preheader
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


FILE_MODE = 0o644  # a web server running as another user reads the archive
DIR_MODE = 0o755


def _ensure_dir(folder: Path) -> None:
    """Make ``folder`` (and missing parents) 0755 whatever the umask."""
    if not folder.is_dir():
        _ensure_dir(folder.parent)
        folder.mkdir()
        os.chmod(folder, DIR_MODE)


def write_archive(settings: Settings, out: Path, include_unsent: bool) -> list[Path]:
    """Write index.html, feed.xml and issues/<date>/index.html under ``out``.

    Pages link to each other relatively, so the folder can be opened from disk
    or served under any path; the feed and canonical links are absolute."""
    items = entries(settings, include_unsent)
    pages = [
        (out / "index.html", index_page(settings, items)),
        (out / "feed.xml", feed(settings, items)),
    ]
    pages += [(out / "issues" / e.slug / "index.html", issue_page(settings, e)) for e in items]
    written = []
    try:
        for path, data in pages:
            _ensure_dir(path.parent)
            write_atomic(path, data, mode=FILE_MODE)
            written.append(path)
    except OSError as exc:
        raise ComposerError(f"{out}: cannot write the archive: {exc.strerror}") from None
    return written
