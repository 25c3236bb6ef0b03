"""Messages to one person that are not issues: the sign-up confirmation and the
welcome mail, rendered through the newsletter's theme (``notice.mjml.j2``,
``notice.txt.j2``) in the reader's language.

Rendered once per (kind, language) with a token where the link goes; a message
then only fills in its link. The words come from the theme's catalogs, so a
notice speaks the language of the edition the reader chose.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from html import escape
from pathlib import Path

import jinja2

from composer.errors import TemplateError
from composer.issue.model import Newsletter
from composer.render.fields import token
from composer.render.html import compile_mjml, inline_css_cached, mark_directions
from composer.render.i18n import Bidi, Words
from composer.render.pipeline import HEAD_END_RE
from composer.render.text import mark_direction, tidy, wrap
from composer.render.themes import environment

ACTION = token("action_url")
EMAIL = token("email")
KINDS = ("confirm", "welcome")


@dataclass(frozen=True)
class Wording:
    title: str
    paragraphs: tuple[str, ...]
    button: str
    note: str


@dataclass(frozen=True)
class Notice:
    """One kind of notice in one language: subject, HTML and text, with tokens
    for the link (``ACTION``) and the reader's address (``EMAIL``)."""

    kind: str
    language: str
    subject: str
    html: str
    text: str

    def fill(self, email: str, link: str) -> tuple[str, str]:
        """HTML and text for one reader: ``email`` an address already checked (it
        may still hold ``&`` or ``'``), ``link`` a URL of ours; escaped for HTML."""
        html = self.html.replace(ACTION, escape(link, quote=True)).replace(EMAIL, escape(email))
        return html, self.text.replace(ACTION, link).replace(EMAIL, email)


def wording(kind: str, words: Words, title: str, days: int) -> Wording:
    if kind == "confirm":
        return Wording(
            words("Confirm your subscription"),
            (words("Please confirm that %(email)s should receive %(title)s.", title=title),),
            words("Yes, subscribe me"),
            words("If you did not ask for this, ignore this message: nothing will be sent to you.")
            + " "
            + words("This link works for %(days)s days.", days=days),
        )
    return Wording(
        words("Welcome to %(title)s", title=title),
        (words("Welcome! %(email)s will receive %(title)s.", title=title),),
        words("Preferences"),
        words("Change what you receive, or unsubscribe."),
    )


def render_notice(
    kind: str,
    language: str,
    newsletter: Newsletter,
    home: Path | None,
    days: int = 7,
    cache_dir: Path | None = None,
) -> Notice:
    words = Words(language, newsletter.strings)
    said = wording(kind, words, newsletter.title, days)
    # The address is a token: "%(email)s" is filled with it, the rest is text.
    said = Wording(
        said.title,
        tuple(p.replace("%(email)s", EMAIL) for p in said.paragraphs),
        said.button,
        said.note,
    )
    env = environment(newsletter.theme, home, cache_dir)
    context = {
        "newsletter": newsletter,
        "notice": said,
        "action_url": ACTION,
        "_": words.markup,
        "edition": Bidi(language, words.dir),
    }
    try:
        source = HEAD_END_RE.sub("\n", env.get_template("notice.mjml.j2").render(**context))
        text = env.get_template("notice.txt.j2").render(**{**context, "_": words})
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"theme {newsletter.theme!r}: template {exc.name!r} is missing (the sign-up "
            "mails need notice.mjml.j2 and notice.txt.j2; copy them from the default theme)"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{newsletter.theme} notice.mjml.j2: {exc.message}") from None
    html = inline_css_cached(mark_directions(compile_mjml(source, newsletter.theme)), cache_dir)
    text = wrap(tidy(text))
    if words.dir == "rtl":
        text = mark_direction(text, "rtl")
    return Notice(kind, language, said.title, html, text)


class Notices:
    """Rendered notices, each made once per (kind, language) and kept."""

    def __init__(self, newsletter: Newsletter, home: Path | None, days: int) -> None:
        self.newsletter, self.home, self.days = newsletter, home, days
        self._made: dict[tuple[str, str], Notice] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, language: str) -> Notice:
        key = (kind, language)
        with self._lock:
            made = self._made.get(key)
            if made is None:
                made = self._made[key] = render_notice(
                    kind, language, self.newsletter, self.home, self.days
                )
        return made
