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
from composer.issue.load import LoadedIssue, load_issue
from composer.issue.model import Issue
from composer.render.i18n import Words, language_name
from composer.render.media import Media
from composer.render.pipeline import render_edition
from composer.send.recipients import view_url
from composer.store.database import Store

SLUG_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_PAGES = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "index.html": """<!DOCTYPE html>
<html lang="{{ language }}" dir="{{ dir }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ _("%(title)s: archive", title=title) }}</title>
<link rel="canonical" href="{{ base }}/{{ prefix }}">
{% for code, href in alternates %}
<link rel="alternate" hreflang="{{ code }}" href="{{ base }}/{{ href }}">
{% endfor %}
<link rel="alternate" type="application/atom+xml" title="{{ title }}"
 href="{{ base }}/{{ prefix }}feed.xml">
<style>
body { font: 17px/1.5 Helvetica, Arial, sans-serif; color: #1f2328; max-width: 42rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; } li { margin: 0 0 1rem; } time { color: #595959; display: block; }
a { color: #a4161a; }
</style>
</head>
<body>
<header><h1>{{ title }}</h1><p>{{ organisation }}: {{ _("Every issue, newest first.") }}
<a href="feed.xml">{{ _("Atom feed") }}</a></p>
{% if others %}<p>{{ _("Other languages:") }}
{% for code, href, name in others %}
<a href="{{ href }}" hreflang="{{ code }}" lang="{{ code }}">{{ name }}</a>
{%- if not loop.last %} · {% endif %}
{% endfor %}</p>{% endif %}
</header>
<main><ol reversed>
{% for e, issue in entries %}
<li><time datetime="{{ e.slug }}">{{ date(issue.date) }}</time>
<a href="{{ up }}issues/{{ e.slug }}/{{ prefix }}index.html">{{ issue.subject }}</a><br>
{{ issue.preheader }}</li>
{% else %}
<li>{{ _("No issue has been sent yet.") }}</li>
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
    loaded: LoadedIssue

    @property
    def issue(self) -> Issue:
        return self.loaded.issue

    def edition(self, code: str | None) -> Issue | None:
        """This entry's edition in exactly ``code`` (None: the main one), if it has it."""
        if code is None:
            return self.loaded.issue
        return self.loaded.editions.get(code)


def sent_slugs(settings: Settings) -> set[str]:
    if not Store.exists(settings.database):
        return set()
    with Store(settings.database) as store:
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
            out.append(Entry(slug, path, load_issue(path)))
        except IssueError:
            if slug in sent:
                raise
    return sorted(out, key=lambda e: e.slug, reverse=True)


def _base(settings: Settings) -> str:
    return settings.base_url


def languages(items: list[Entry]) -> list[str]:
    """The other editions' languages found in the archive, in order of appearance."""
    found: dict[str, None] = {}
    for e in items:
        for code in e.loaded.editions:
            if code != e.loaded.main:
                found.setdefault(code, None)
    return list(found)


def _words(items: list[Entry], edition: str | None) -> Words:
    nl = items[0].issue.newsletter if items else None
    language = edition or (nl.language if nl else "en")
    return Words(language, nl.strings if nl and edition is None else {})


def index_page(settings: Settings, items: list[Entry], edition: str | None = None) -> bytes:
    """The archive's index in the main language, or in ``edition``'s (``/es/``)."""
    shown = [(e, issue) for e in items if (issue := e.edition(edition)) is not None]
    newest = shown[0][1] if shown else None
    words = _words(items, edition)
    codes = languages(items)
    prefix = f"{edition}/" if edition else ""
    up = "../" if edition else ""
    others = [
        (code, f"{up}{code}/index.html", language_name(code)) for code in codes if code != edition
    ]
    if edition is not None and items:
        main = items[0].loaded.main
        others.insert(0, (main, "../index.html", language_name(main)))
    alternates = []
    if codes and items:
        alternates = [(items[0].loaded.main, ""), *((c, f"{c}/") for c in codes)]
    return (
        _PAGES.get_template("index.html")
        .render(
            entries=shown,
            base=_base(settings),
            title=newest.newsletter.title if newest else "Newsletter",
            organisation=newest.newsletter.organisation if newest else "",
            language=words.language,
            dir=words.dir,
            prefix=prefix,
            up=up,
            others=others,
            alternates=alternates,
            _=words.markup,
            date=words.date,
        )
        .encode()
    )


def issue_url(settings: Settings, slug: str, edition: str | None = None) -> str:
    return view_url(settings, slug, edition)


def issue_page(
    settings: Settings, entry: Entry, edition: str | None = None, media: Media | None = None
) -> bytes:
    """The web version of one edition: the email without anything personal, with
    its canonical URL, ``hreflang`` links to the other editions (in the head and
    on the page) and a relative link back to the index (the archive works from
    disk too)."""
    loaded = entry.loaded
    code = edition or loaded.main
    media = media or Media(entry.path.parent, settings.home, settings.base_url)
    rendered = render_edition(
        loaded, code, settings.home, web=True, cache_dir=settings.cache_dir, media=media
    )
    media.publish(settings.home / "media")  # what `serve` serves
    html = rendered.html
    depth = "../../" if edition is None else "../../../"
    head = [
        f'<link rel="canonical" href="{escape(issue_url(settings, entry.slug, edition))}">',
        f'<link rel="index" href="{depth}index.html">',
    ]
    links = []
    if len(loaded.editions) > 1:
        for other in loaded.editions:
            key = None if other == loaded.main else other
            url = issue_url(settings, entry.slug, key)
            head.append(f'<link rel="alternate" hreflang="{escape(other)}" href="{escape(url)}">')
            if other != code:
                here = "" if edition is None else "../"
                href = f"{here}{other + '/' if key else ''}index.html"
                links.append(
                    f'<a href="{escape(href)}" hreflang="{escape(other)}" lang="{escape(other)}" '
                    f'style="color:#a4161a">{escape(language_name(other))}</a>'
                )
        main_url = escape(issue_url(settings, entry.slug))
        head.append(f'<link rel="alternate" hreflang="x-default" href="{main_url}">')
    head_end = html.find("</head>")
    if head_end >= 0:
        html = html[:head_end] + "".join(head) + html[head_end:]
    if links:
        words = Words(code, rendered.issue.newsletter.strings)
        align = "right" if words.dir == "rtl" else "left"
        nav = (
            f'<nav aria-label="{escape(words("Other languages:"))}" lang="{escape(code)}" '
            f'dir="{words.dir}" style="max-width:600px;margin:0 auto;padding:8px 24px;'
            f'font:14px Helvetica,Arial,sans-serif;text-align:{align}">'
            f"{escape(words('Other languages:'))} {' · '.join(links)}</nav>"
        )
        body = re.search(r"<body[^>]*>", html)
        if body:
            html = html[: body.end()] + nav + html[body.end() :]
    return html.encode()


def feed(settings: Settings, items: list[Entry], edition: str | None = None) -> bytes:
    """Atom (RFC 4287), built with ElementTree so that every value is escaped: the
    main editions, or ``edition``'s (``/es/feed.xml``)."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    base = _base(settings)
    shown = [(e, issue) for e in items if (issue := e.edition(edition)) is not None]
    nl = shown[0][1].newsletter if shown else None
    prefix = f"{edition}/" if edition else ""
    root = ET.Element(f"{{{ns}}}feed")
    root.set("xml:lang", edition or (nl.language if nl else "en"))
    ET.SubElement(root, f"{{{ns}}}title").text = nl.title if nl else "Newsletter"
    ET.SubElement(root, f"{{{ns}}}id").text = f"{base}/{prefix}"
    ET.SubElement(root, f"{{{ns}}}link", href=f"{base}/{prefix}feed.xml", rel="self")
    ET.SubElement(root, f"{{{ns}}}link", href=f"{base}/{prefix}", rel="alternate")
    newest = shown[0][1].date if shown else dt.date(2000, 1, 1)
    ET.SubElement(root, f"{{{ns}}}updated").text = f"{newest.isoformat()}T00:00:00Z"
    author = ET.SubElement(root, f"{{{ns}}}author")
    ET.SubElement(author, f"{{{ns}}}name").text = nl.organisation if nl else "Newsletter"
    for e, issue in shown:
        entry = ET.SubElement(root, f"{{{ns}}}entry")
        url = issue_url(settings, e.slug, edition)
        ET.SubElement(entry, f"{{{ns}}}title").text = issue.subject
        ET.SubElement(entry, f"{{{ns}}}id").text = url
        ET.SubElement(entry, f"{{{ns}}}link", href=url, rel="alternate")
        ET.SubElement(entry, f"{{{ns}}}updated").text = f"{e.slug}T00:00:00Z"
        ET.SubElement(entry, f"{{{ns}}}summary").text = issue.preheader
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
    """Write index.html, feed.xml and issues/<date>/index.html under ``out``, and
    for each other language LANG/index.html, LANG/feed.xml and
    issues/<date>/LANG/index.html.

    Pages link to each other relatively, so the folder can be opened from disk
    or served under any path; the feed and canonical links are absolute."""
    items = entries(settings, include_unsent)
    pages = [
        (out / "index.html", index_page(settings, items)),
        (out / "feed.xml", feed(settings, items)),
    ]
    for code in languages(items):
        pages.append((out / code / "index.html", index_page(settings, items, code)))
        pages.append((out / code / "feed.xml", feed(settings, items, code)))
    media = Media(settings.home / "issues", settings.home, settings.base_url)
    for e in items:
        pages.append((out / "issues" / e.slug / "index.html", issue_page(settings, e, None, media)))
        for code in e.loaded.editions:
            if code != e.loaded.main:
                path = out / "issues" / e.slug / code / "index.html"
                pages.append((path, issue_page(settings, e, code, media)))
    pages += [(out / "media" / f.name, f.data) for f in media.files.values()]
    written = []
    try:
        for path, data in pages:
            _ensure_dir(path.parent)
            write_atomic(path, data, mode=FILE_MODE)
            written.append(path)
    except OSError as exc:
        raise ComposerError(f"{out}: cannot write the archive: {exc.strerror}") from None
    return written
