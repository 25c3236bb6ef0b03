"""``newsletter check``: problems an editor should fix before sending.

Errors stop a send; warnings are listed. Every finding names the file, line
and column, and the field path, like schema errors do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from composer.issue import markdown as md
from composer.issue.files import date_from_name, is_local
from composer.issue.load import LoadedIssue
from composer.issue.model import (
    AnyBlock,
    ButtonBlock,
    CalloutBlock,
    FocusBlock,
    Image,
    ImageBlock,
    Issue,
    LeadBlock,
    Link,
    LinksBlock,
    QuoteBlock,
    RegionsBlock,
    Reply,
    Story,
    TextBlock,
)
from composer.issue.words import WORDS, catalog_languages, has_catalog, placeholders

# Link texts that say nothing when read out of context.
VAGUE_LINKS = frozenset(
    ("here", "click here", "click", "this", "link", "this link", "more", "read more", "aquí")
)
GMAIL_CLIP_BYTES = 102 * 1024
WARN_HTML_BYTES = 90 * 1024

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    where: str  # file:line:col
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.field}: {self.message}"


def _field(loc: Loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "mailto":
        return None if "@" in parts.path else "mailto: link has no address"
    if parts.scheme not in ("http", "https"):
        return f"link {url!r} is not http(s) or mailto; use a full https:// address"
    if not parts.netloc:
        return f"link {url!r} has no host; use a full https:// address"
    if any(c.isspace() for c in url):
        return f"link {url!r} contains white space; encode it as %20"
    return None


class _Walker:
    def __init__(self, loaded: LoadedIssue, edition: str | None = None) -> None:
        self.loaded = loaded
        self.edition = edition  # None: the main edition
        self.prefix = f"editions.{edition}." if edition else ""
        self.findings: list[Finding] = []

    def add(self, severity: str, loc: Loc, message: str) -> None:
        where = self.loaded.locate(loc, self.edition)
        self.findings.append(Finding(severity, where, self.prefix + _field(loc), message))

    def url(self, url: str | None, loc: Loc) -> None:
        if url is not None and (problem := _url_problem(url)):
            self.add("error", loc, problem)

    def local_image(self, src: str, loc: Loc) -> None:
        """An image kept next to the issue: it must be there, inside the newsletter."""
        folder = self.loaded.path.parent
        path = (folder / src).resolve()
        if not path.is_relative_to(folder.parent.resolve()):
            self.add("error", loc, f"image {src} is outside the newsletter's folder; move it in")
        elif not path.is_file():
            self.add("error", loc, f"image {src}: no such file in {folder}")

    def src(self, src: str, loc: Loc) -> None:
        if is_local(src):
            self.local_image(src, loc)
        else:
            self.url(src, loc)

    def markdown(self, text: str | None, loc: Loc) -> None:
        if not text:
            return
        for ref in md.references(text):
            if ref.kind == "link":
                self.url(ref.target, loc)
                vague = ref.alt.strip().lower().rstrip(".:!")
                if vague in VAGUE_LINKS:
                    self.add(
                        "warning",
                        loc,
                        f"link text {ref.alt.strip()!r} says nothing out of context (screen "
                        "readers list links by their text); name where it leads: "
                        "[the company's response](...)",
                    )
            else:
                self.src(ref.target, loc)
                if not ref.alt.strip():
                    self.add(
                        "error", loc, f"image {ref.target} has no alt text: ![describe it](url)"
                    )

    def image(self, image: Image | None, loc: Loc) -> None:
        if image is None:
            return
        self.src(image.src, (*loc, "src"))
        self.url(image.href, (*loc, "href"))
        if not image.alt.strip() and not image.decorative:
            self.add(
                "error",
                (*loc, "alt"),
                "image has no alt text; describe it, or set decorative: true",
            )

    def link(self, link: Link, loc: Loc) -> None:
        self.url(link.url, (*loc, "url"))
        self.markdown(link.note, (*loc, "note"))
        if not link.title.strip():
            self.add("error", (*loc, "title"), "link has no text")

    def reply(self, reply: Reply, loc: Loc) -> None:
        if not [c for c in reply.companies if c.strip()]:
            self.add(
                "error",
                (*loc, "companies"),
                "right-of-reply note names no company; list them in companies: [...]",
            )
        self.markdown(reply.text, (*loc, "text"))

    def story(self, story: Story, loc: Loc) -> None:
        if not story.headline.strip():
            self.add("warning", (*loc, "headline"), "headline is empty; write one")
        self.url(story.url, (*loc, "url"))
        self.image(story.image, (*loc, "image"))
        self.markdown(story.body, (*loc, "body"))
        if not story.body.strip():
            self.add("warning", (*loc, "body"), "story has no text")
        self.markdown(story.see_also, (*loc, "see_also"))
        for i, reply in enumerate(story.replies):
            self.reply(reply, (*loc, "replies", i))

    def empty(self, loc: Loc, what: str) -> None:
        self.add("warning", loc, f"{what} is empty; add content or remove it")

    def issue(self, issue: Issue) -> None:
        nl = issue.newsletter
        self.url(nl.url, ("newsletter", "url"))
        self.image(nl.logo, ("newsletter", "logo"))
        for i, link in enumerate(nl.footer.links):
            self.link(link, ("newsletter", "footer", "links", i))
        self.markdown(nl.footer.reason, ("newsletter", "footer", "reason"))
        if not nl.footer.address.strip():
            self.add(
                "error",
                ("newsletter", "footer", "address"),
                "a postal address is required in commercial email (CAN-SPAM)",
            )
        for i, block in enumerate(issue.sections):
            self.block(block, ("sections", i))

    def block(self, block: AnyBlock, loc: Loc) -> None:
        name = f"section {block.heading!r}" if block.heading else "section"
        if isinstance(block, LeadBlock):
            self.story(block.story, (*loc, "story"))
        elif isinstance(block, LinksBlock):
            if not block.items and not block.intro and not block.outro:
                self.empty((*loc, "items"), name)
            self.markdown(block.intro, (*loc, "intro"))
            self.markdown(block.outro, (*loc, "outro"))
            for i, item in enumerate(block.items):
                self.link(item, (*loc, "items", i))
        elif isinstance(block, FocusBlock):
            if not block.topics:
                self.empty((*loc, "topics"), name)
            for i, topic in enumerate(block.topics):
                tloc = (*loc, "topics", i)
                if not topic.heading.strip():
                    self.add("warning", (*tloc, "heading"), "heading is empty; write one")
                if not topic.body.strip():
                    self.empty((*tloc, "body"), f"topic {topic.heading!r}")
                self.markdown(topic.body, (*tloc, "body"))
                for j, reply in enumerate(topic.replies):
                    self.reply(reply, (*tloc, "replies", j))
                if topic.cta:
                    self.markdown(topic.cta.text, (*tloc, "cta", "text"))
                    self.url(topic.cta.url, (*tloc, "cta", "url"))
                    if topic.cta.button and not topic.cta.url:
                        self.add("error", (*tloc, "cta", "url"), "a button needs a url")
        elif isinstance(block, RegionsBlock):
            if not block.regions:
                self.empty((*loc, "regions"), name)
            for i, region in enumerate(block.regions):
                rloc = (*loc, "regions", i)
                if region.spotlight:
                    self.story(region.spotlight, (*rloc, "spotlight"))
                for j, item in enumerate(region.other_news):
                    self.link(item, (*rloc, "other_news", j))
                if region.explore:
                    self.link(region.explore, (*rloc, "explore"))
                if region.other_news_label and not region.other_news:
                    self.add(
                        "warning",
                        (*rloc, "other_news"),
                        f"{region.name}: '{region.other_news_label}' is followed by no links",
                    )
                if not region.spotlight and not region.other_news:
                    self.empty(rloc, f"region {region.name!r}")
        elif isinstance(block, TextBlock | CalloutBlock):
            if not block.body.strip():
                self.empty((*loc, "body"), name)
            self.markdown(block.body, (*loc, "body"))
        elif isinstance(block, ButtonBlock):
            self.markdown(block.text, (*loc, "text"))
            self.url(block.url, (*loc, "url"))
            if not block.label.strip():
                self.add("error", (*loc, "label"), "the button has no text; write what it does")
        elif isinstance(block, ImageBlock):
            self.image(block.image, (*loc, "image"))
            self.markdown(block.caption, (*loc, "caption"))
        elif isinstance(block, QuoteBlock):
            if not block.text.strip():
                self.empty((*loc, "text"), name)
            self.markdown(block.text, (*loc, "text"))
            self.url(block.url, (*loc, "url"))


# Fields an edition translates (URLs, names of outlets and companies, bylines
# and the postal address are usually the same in every language).
TRANSLATED = frozenset(
    [
        "subject",
        "preheader",
        "headline",
        "kicker",
        "body",
        "text",
        "heading",
        "title",
        "label",
        "note",
        "see_also",
        "see_also_label",
        "intro",
        "outro",
        "name",
        "spotlight_label",
        "other_news_label",
        "alt",
        "button",
        "reason",
        "unsubscribe_label",
        "view_online_label",
    ]
)


def _has_text(value: Any) -> bool:
    """Whether ``value`` holds any text an edition would translate."""
    if isinstance(value, dict):
        return any(
            (k in TRANSLATED and isinstance(v, str) and v.strip()) or _has_text(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_text(v) for v in value)
    return False


class _Editions:
    """What one edition has that the main one lacks, and the reverse."""

    def __init__(self, loaded: LoadedIssue, code: str) -> None:
        self.loaded, self.code, self.main = loaded, code, loaded.main
        self.findings: list[Finding] = []

    def add(self, loc: Loc, message: str, in_overlay: bool) -> None:
        where = self.loaded.locate(loc, self.code if in_overlay else None, merged=False)
        field = (f"editions.{self.code}." if in_overlay else "") + _field(loc)
        self.findings.append(Finding("warning", where, field, message))

    def untranslated(self, loc: Loc) -> None:
        self.add(
            loc,
            f"not in the {self.code} edition, which shows the {self.main} text; "
            f"translate it under editions.{self.code}",
            False,
        )

    def compare(self, main: Any, over: Any, loc: Loc) -> None:
        if isinstance(main, dict) and isinstance(over, dict):
            for key, value in main.items():
                if key == "editions":
                    continue
                if key not in over:
                    if (key in TRANSLATED and isinstance(value, str) and value.strip()) or (
                        key not in TRANSLATED and _has_text(value)
                    ):
                        self.untranslated((*loc, key))
                else:
                    self.compare(value, over[key], (*loc, key))
            for key, value in over.items():
                if key not in main and (key in TRANSLATED or _has_text(value)):
                    self.add(
                        (*loc, key),
                        f"in the {self.code} edition only; the {self.main} edition has none",
                        True,
                    )
        elif isinstance(main, list) and isinstance(over, list):
            for i, item in enumerate(over):
                here = (*loc, i)
                if isinstance(item, dict) and item.get("omit") is True:
                    if i < len(main):
                        self.add(here, f"left out of the {self.code} edition", False)
                elif i >= len(main):
                    self.add(here, f"in the {self.code} edition only", True)
                elif isinstance(item, dict) and isinstance(main[i], dict):
                    kinds = main[i].get("type"), item.get("type", main[i].get("type"))
                    if kinds[0] != kinds[1]:
                        self.add(
                            here,
                            f"a {kinds[0]} section in the {self.main} edition, "
                            f"a {kinds[1]} section in the {self.code} edition",
                            True,
                        )
                    else:
                        self.compare(main[i], item, here)
            for i in range(len(over), len(main)):
                if _has_text(main[i]):
                    self.untranslated((*loc, i))


def _strings(walker: _Walker, issue: Issue) -> None:
    """The newsletter's own words for the theme's: known ones, same names."""
    nl = issue.newsletter
    loc: Loc = ("newsletter", "strings")
    for key, text in nl.strings.items():
        if key not in WORDS:
            walker.add(
                "error",
                (*loc, key),
                "not one of the theme's words; `newsletter strings` lists them",
            )
        elif placeholders(text) != placeholders(key):
            names = ", ".join(f"%({n})s" for n in sorted(placeholders(key))) or "none"
            walker.add("error", (*loc, key), f"must keep the same placeholders ({names})")
    if not has_catalog(issue.language):
        missing = [w for w in WORDS if w not in nl.strings]
        if missing:
            walker.add(
                "warning",
                ("newsletter", "language"),
                f"no catalog for {issue.language!r} ({', '.join(catalog_languages())} have "
                f"one): {len(missing)} of the theme's words stay English; translate them "
                "in newsletter.strings (`newsletter strings` lists them)",
            )


def check_issue(loaded: LoadedIssue, html_bytes: int | dict[str, int] | None) -> list[Finding]:
    """Every finding for one issue and its editions, errors first, in file order
    within each.

    ``html_bytes`` is the size of the rendered HTML part (per edition), when
    it was rendered."""
    walker = _Walker(loaded)
    walker.issue(loaded.issue)
    _strings(walker, loaded.issue)
    # A finding about a value the edition shares is the main edition's, said once.
    seen = {(f.where, f.field) for f in walker.findings}
    data = loaded.data if isinstance(loaded.data, dict) else {}
    for code, issue in loaded.editions.items():
        if code == loaded.main:
            continue
        other = _Walker(loaded, code)
        other.issue(issue)
        _strings(other, issue)
        walker.findings += [
            f for f in other.findings if (f.where, f.field.removeprefix(other.prefix)) not in seen
        ]
        overlay = (data.get("editions") or {}).get(code) or {}
        diff = _Editions(loaded, code)
        diff.compare(data, overlay, ())
        walker.findings += diff.findings
    expected = date_from_name(loaded.path)
    if expected is not None and expected != loaded.issue.date:
        walker.add(
            "error",
            ("date",),
            f"date {loaded.issue.date} does not match the file name {loaded.path.name}; "
            "rename the file or fix the date",
        )
    sizes = {loaded.main: html_bytes} if isinstance(html_bytes, int) else (html_bytes or {})
    for code, size in sizes.items():
        edition = "" if code == loaded.main or len(sizes) == 1 else f" of the {code} edition"
        where = (
            f"HTML part{edition} is {size / 1024:.1f} KB as sent (quoted-printable); "
            "Gmail clips messages over 102 KB, hiding the footer and its unsubscribe link"
        )
        if size > GMAIL_CLIP_BYTES:
            walker.add("error", ("sections",), where + ": shorten the issue")
        elif size > WARN_HTML_BYTES:
            walker.add("warning", ("sections",), where + ": you are close")
    order = {"error": 0, "warning": 1}
    unique = list(dict.fromkeys(walker.findings))  # two vague links in one text: said once
    return sorted(unique, key=lambda f: order[f.severity])
