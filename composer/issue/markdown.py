"""Markdown for story text: to HTML for the email, to plain text for the text part.

Both outputs come from the same markdown-it token stream, so the plain-text
part is built from the content, not by stripping tags from the HTML. Raw HTML
in the source is disabled: it is shown as text, never passed through.
Links in plain text are written ``text <url>``: angle brackets are the
delimiters RFC 3986 (appendix C) recommends for URLs in running text, and mail
clients make them clickable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


@lru_cache(maxsize=4096)
def _block_tokens(text: str) -> tuple[Token, ...]:
    return tuple(_parser().parse(text))


@lru_cache(maxsize=4096)
def _inline_tokens(text: str) -> tuple[Token, ...]:
    return tuple(_parser().parseInline(text))


# Images in running text never overflow a phone's screen.
IMAGE_STYLE = "display:block;max-width:100%;height:auto;border:0"


def _for_email(tokens: tuple[Token, ...], under: int | None) -> list[Token]:
    """Tokens adjusted for an email: images kept within the column, and
    headings placed under the heading level ``under`` (a ``#`` in a story whose
    headline is an h3 becomes an h4), never deeper than h6."""
    out: list[Token] = []
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close") and under is not None:
            tok = tok.copy(tag=f"h{min(6, under + int(tok.tag[1:]))}")
        if tok.children and any(c.type == "image" for c in tok.children):
            children = []
            for child in tok.children:
                if child.type == "image":
                    child = child.copy(attrs={**child.attrs, "style": IMAGE_STYLE})
                children.append(child)
            tok = tok.copy(children=children)
        out.append(tok)
    return out


def to_html(text: str, under: int | None = None) -> Markup:
    """Block Markdown -> HTML (paragraphs, lists, headings under level ``under``)."""
    tokens = _for_email(_block_tokens(text), under)
    return Markup(_parser().renderer.render(tokens, _parser().options, {}))


def to_html_inline(text: str) -> Markup:
    """Inline Markdown (no paragraphs) -> HTML."""
    tokens = _for_email(_inline_tokens(text), None)
    return Markup(_parser().renderer.render(tokens, _parser().options, {}))


# Where a link's URL goes in plain text: given the URL, what follows the link's
# text (`` [3]`` for a numbered reference). Without one: `` <url>``.
LinkNote = Callable[[str], str]


def _inline_text(children: list[Token] | None, note: LinkNote | None = None) -> str:
    out: list[str] = []
    link_stack: list[tuple[str, int]] = []
    for tok in children or []:
        if tok.type in ("text", "code_inline"):
            out.append(tok.content)
        elif tok.type == "softbreak":
            out.append(" ")
        elif tok.type == "hardbreak":
            out.append("\n")
        elif tok.type == "link_open":
            link_stack.append((str(tok.attrGet("href") or ""), len(out)))
        elif tok.type == "link_close" and link_stack:
            href, start = link_stack.pop()
            label = "".join(out[start:])
            if href and label.strip() != href:
                out.append(note(href) if note else f" <{href}>")
            elif href and note:
                out[start:] = [f"<{href}>"]
        elif tok.type == "image":
            alt = "".join(c.content for c in tok.children or [])
            if alt:
                out.append(f"[{alt}]")
    return "".join(out)


def to_text(text: str, note: LinkNote | None = None) -> str:
    """Block Markdown -> plain text: paragraphs separated by a blank line, each
    on one line (the text part wraps them)."""
    blocks: list[str] = []
    prefix: list[str] = []
    counters: list[int | None] = []
    for tok in _block_tokens(text):
        if tok.type == "bullet_list_open":
            counters.append(None)
        elif tok.type == "ordered_list_open":
            counters.append(int(tok.attrGet("start") or 1))
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            counters.pop()
        elif tok.type == "list_item_open" and counters:
            number = counters[-1]
            if number is None:
                prefix.append("- ")
            else:
                prefix.append(f"{number}. ")
                counters[-1] = number + 1
        elif tok.type == "list_item_close" and prefix:
            prefix.pop()
        elif tok.type == "blockquote_open":
            prefix.append("> ")
        elif tok.type == "blockquote_close" and prefix:
            prefix.pop()
        elif tok.type == "inline":
            content = _inline_text(tok.children, note)
            if blocks and blocks[-1].endswith("\x00heading"):
                blocks[-1] = content.upper()
                continue
            blocks.append("".join(prefix) + content)
        elif tok.type == "heading_open":
            blocks.append("\x00heading")
        elif tok.type in ("fence", "code_block"):
            blocks.append("\n".join("    " + line for line in tok.content.rstrip("\n").split("\n")))
        elif tok.type == "hr":
            blocks.append("-" * 20)
    return _join_blocks(blocks)


def _join_blocks(blocks: list[str]) -> str:
    """Blank lines between paragraphs, none between items of one list."""
    out: list[str] = []
    for block in blocks:
        if out and not (_is_item(block) and _is_item(out[-1])):
            out.append("")
        out.append(block)
    return "\n".join(out)


def _is_item(line: str) -> bool:
    return line[:2] == "- " or line[:1].isdigit() and ". " in line[:5]


def to_text_inline(text: str, note: LinkNote | None = None) -> str:
    tokens = _inline_tokens(text)
    return _inline_text(list(tokens[0].children or []), note) if tokens else ""


@dataclass(frozen=True)
class Reference:
    """A link or image found in Markdown, for the checker."""

    kind: str  # "link" or "image"
    target: str
    alt: str = ""  # an image's alt text, a link's text


def references(text: str) -> Iterator[Reference]:
    for tok in _block_tokens(text):
        children = list(tok.children or [])
        for i, child in enumerate(children):
            if child.type == "link_open":
                label = []
                for inner in children[i + 1 :]:
                    if inner.type == "link_close":
                        break
                    label.append(inner.content)
                yield Reference("link", str(child.attrGet("href") or ""), "".join(label))
            elif child.type == "image":
                alt = "".join(c.content for c in child.children or [])
                yield Reference("image", str(child.attrGet("src") or ""), alt)
