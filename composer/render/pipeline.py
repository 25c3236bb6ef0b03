"""Issue -> RenderedIssue, once per issue: Jinja -> MJML -> HTML -> inlined CSS.

The result holds the email HTML and text with placeholder tokens in place of
per-subscriber values (``fields``); sending fills them in without rendering
again. ``web=True`` renders the archive's version, with nothing personal in it.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import re
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2

from composer.errors import TemplateError
from composer.issue.load import LoadedIssue
from composer.issue.model import Issue, with_labels
from composer.render.fields import Placeholders
from composer.render.html import compile_mjml, inline_css_cached, mark_directions
from composer.render.i18n import Bidi, Words, bidi_of
from composer.render.media import Media, localise_issue
from composer.render.text import render_text
from composer.render.themes import environment

log = logging.getLogger(__name__)

# MRML 1.4 rejects spaces-only text (no newline) just before </mj-head>.
HEAD_END_RE = re.compile(r"[ \t]+(?=</mj-head>)")


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
    def language(self) -> str:
        return self.issue.language

    @property
    def digest(self) -> str:
        """Fingerprint of what subscribers get; changes when the issue is edited."""
        h = hashlib.sha256()
        for part in (self.subject, self.html, self.text):
            h.update(part.encode())
            h.update(b"\x00")
        return h.hexdigest()[:32]

    @cached_property
    def html_bytes(self) -> int:
        """The HTML part's size as sent: quoted-printable with CRLF line ends, the
        form every relay accepts (the 8bit form for 8BITMIME relays is smaller).
        Gmail clips a message whose HTML is over 102 KB as it arrives."""
        encoded = binascii.b2a_qp(self.html.encode(), istext=True)
        return len(encoded) + encoded.count(b"\n")


def _template_location(exc: BaseException) -> str:
    """``file:line`` of the innermost template frame of a Jinja error."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return "template"


def words_for(issue: Issue) -> Words:
    return Words(issue.language, issue.newsletter.strings)


def render_mjml(issue: Issue, env: jinja2.Environment, words: Words, web: bool = False) -> str:
    """The theme's MJML for ``issue`` (its labels already filled in)."""
    edition = Bidi(issue.language, words.dir)
    try:
        template = env.get_template("issue.mjml.j2")
        source = template.render(
            issue=issue,
            subscriber=Placeholders(),
            web=web,
            _=words.markup,
            gettext=words.markup,
            edition=edition,
            date=words.date(issue.date),
            bidi=lambda block: bidi_of(edition, block.lang, block.dir),
        )
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"theme {issue.theme_name!r}: template {exc.name!r} is missing; "
            "every theme needs issue.mjml.j2 and a blocks/ partial per section type"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_template_location(exc)}: {exc.message}") from None
    return HEAD_END_RE.sub("\n", source)


def render_issue(
    loaded: LoadedIssue,
    home: Path | None = None,
    web: bool = False,
    cache_dir: Path | None = None,
    media: Media | None = None,
) -> RenderedIssue:
    """Render the main edition once (``web=True``: the archive's version)."""
    return render_edition(loaded, loaded.main, home, web, cache_dir, media)


def render_edition(
    loaded: LoadedIssue,
    code: str,
    home: Path | None = None,
    web: bool = False,
    cache_dir: Path | None = None,
    media: Media | None = None,
) -> RenderedIssue:
    """Render edition ``code`` once (``web=True``: the archive's version, nothing
    personal). ``media`` publishes the images kept next to the issue."""
    started = time.perf_counter()
    issue = localise_issue(loaded.edition(code), media)
    env = environment(issue.theme_name, home, cache_dir)
    words = words_for(issue)
    shown = with_labels(issue, words)  # what the templates see
    mjml_source = render_mjml(shown, env, words, web=web)
    html = inline_css_cached(
        mark_directions(compile_mjml(mjml_source, issue.theme_name)), cache_dir
    )
    if media is not None:
        html = media.sized(html)
    try:
        text = render_text(shown, Placeholders(), env, web=web, words=words)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_template_location(exc)}: {exc.message}") from None
    log.debug(
        "rendered %s (theme %s%s): %d bytes of HTML in %.0f ms",
        loaded.path,
        issue.theme_name,
        ", web" if web else "",
        len(html.encode()),
        (time.perf_counter() - started) * 1000,
    )
    return RenderedIssue(issue=issue, path=loaded.path, html=html, text=text, mjml=mjml_source)
