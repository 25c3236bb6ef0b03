"""The plain-text part: the theme's ``issue.txt.j2``, written from the issue
model (not from the HTML), then wrapped.

The template writes each paragraph on one line; ``wrap`` then breaks lines at
78 characters between words, never inside a URL, continuing list items and
quotations under their marker. Links in running text become numbered
references (``the report [1]``) listed after their section; a link of a list
goes on its own line. Per-subscriber values are tokens (see ``fields``).
Right-to-left text gets direction marks, line by line.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

import jinja2

from composer.issue import markdown as md
from composer.issue.editions import direction
from composer.issue.model import AnyBlock, Issue
from composer.render.fields import Placeholders
from composer.render.i18n import Words

WIDTH = 78
RULE = "=" * 60
THIN = "-" * 60

# Marks that set a plain-text paragraph's direction (the first strong
# character decides it, and a line may start with a URL or a number).
RLM, LRM = "\u200f", "\u200e"


def mark_direction(text: str, way: str) -> str:
    """Every line of ``text`` made to run ``way`` ('rtl' or 'ltr')."""
    mark = RLM if way == "rtl" else LRM
    return "\n".join(
        line if not line or line[0] in (RLM, LRM) else mark + line for line in text.split("\n")
    )


class References:
    """The numbered links of one section: ``the report [1]``, then ``[1] <url>``."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def note(self, url: str) -> str:
        if url not in self.urls:
            self.urls.append(url)
        return f" [{self.urls.index(url) + 1}]"

    def __str__(self) -> str:
        return "\n".join(f"[{i}] <{url}>" for i, url in enumerate(self.urls, 1))


_MARKER_RE = re.compile(r"^(\s*(?:[-*] |\d+\. |> |\[\d+\] )?)")


def wrap(text: str, width: int = WIDTH) -> str:
    """Lines over ``width`` broken between words (a URL or a long word stays whole);
    a list item's or quotation's following lines go under its text; code
    (indented four spaces) is left as written."""
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith("    "):
            out.append(line)
            continue
        marker = _MARKER_RE.match(line).group(1)  # type: ignore[union-attr]
        if " " not in line[len(marker) :].strip():  # one long word or URL: nowhere to break
            out.append(line)
            continue
        indent = "> " if marker.strip() == ">" else " " * len(marker)
        out.extend(
            textwrap.wrap(
                line,
                width=width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [""]
        )
    return "\n".join(out)


def tidy(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


@jinja2.pass_context
def _section(context: jinja2.runtime.Context, text: str, block: AnyBlock) -> str:
    """One section's text, tidied, marked with its own direction if it has one."""
    text = tidy(text).rstrip("\n")
    way = block.dir or (direction(block.lang) if block.lang else None)
    return mark_direction(text, way) if way and way != context["edition_dir"] else text


def _md_text(text: str, refs: References | None = None) -> str:
    return md.to_text(text, refs.note if refs else None)


def _md_text_inline(text: str, refs: References | None = None) -> str:
    return md.to_text_inline(text, refs.note if refs else None)


def text_filters() -> dict[str, Callable[..., str]]:
    """The filters a text template has besides Jinja's own."""
    return {"md_text": _md_text, "md_text_inline": _md_text_inline, "section": _section}


def render_text(
    issue: Issue,
    subscriber: Placeholders,
    env: jinja2.Environment,
    web: bool = False,
    words: Words | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """The whole text part, tokens in place of per-subscriber values."""
    words = words or Words(issue.language, issue.newsletter.strings)
    template = env.get_template("issue.txt.j2")
    text = template.render(
        issue=issue,
        subscriber=subscriber,
        web=web,
        _=words,
        date=words.date(issue.date),
        edition_dir=words.dir,
        references=References,
        rule=RULE,
        thin=THIN,
        **(context or {}),
    )
    text = wrap(tidy(text))
    return mark_direction(text, "rtl") if words.dir == "rtl" else text
