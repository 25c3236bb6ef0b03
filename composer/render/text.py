"""The plain-text part, written from the issue model (not from the HTML).

Layout conventions: section headings in capitals between rules, a blank line
between paragraphs, links as ``text <url>``, no hard wrapping (phones reflow
text; hard breaks at 72 columns look ragged there). Per-subscriber values are
tokens (see ``fields``).
"""

from __future__ import annotations

from composer.issue import markdown as md
from composer.issue.editions import direction
from composer.issue.model import (
    AnyBlock,
    FocusBlock,
    Issue,
    LeadBlock,
    Link,
    LinksBlock,
    RegionsBlock,
    Reply,
    Story,
    TextBlock,
)
from composer.render.fields import Placeholders
from composer.render.i18n import Words

RULE = "=" * 60
THIN = "-" * 60


def _link(link: Link) -> str:
    label = f"{link.label} | " if link.label else ""
    line = f"{label}{link.title} <{link.url}>"
    if link.note:
        line += f" — {md.to_text_inline(link.note)}"
    if link.byline:
        line += f"\n  {link.byline}"
    return line


def _reply(reply: Reply) -> str:
    icon = f"{reply.icon} " if reply.icon else ""
    return icon + md.to_text_inline(reply.text)


# Marks that set a plain-text paragraph's direction (the first strong
# character decides it, and a line may start with a URL or a number).
RLM, LRM = "\u200f", "\u200e"


def mark_direction(text: str, way: str) -> str:
    """Every line of ``text`` made to run ``way`` ('rtl' or 'ltr')."""
    mark = RLM if way == "rtl" else LRM
    return "\n".join(
        line if not line or line[0] in (RLM, LRM) else mark + line for line in text.split("\n")
    )


def _story(story: Story, words: Words) -> list[str]:
    kicker = f"{story.kicker}: " if story.kicker else ""
    head = [kicker + story.headline]
    if story.url:
        head.append(f"<{story.url}>")
    if story.sources:
        head.append(", ".join(story.sources))
    out = ["\n".join(head)]
    if story.image and not story.image.decorative and story.image.alt:
        out.append(f"[{story.image.alt}]")
    out.append(md.to_text(story.body))
    out.extend(_reply(r) for r in story.replies)
    if story.see_also:
        label = story.see_also_label or words("See also:")
        out.append(f"{label} {md.to_text_inline(story.see_also)}")
    return out


def _heading(text: str | None) -> list[str]:
    return [f"{RULE}\n{text.upper()}\n{RULE}"] if text else []


def _block(block: AnyBlock, words: Words) -> list[str]:
    out = _heading(block.heading)
    if isinstance(block, LeadBlock):
        out.extend(_story(block.story, words))
    elif isinstance(block, LinksBlock):
        if block.intro:
            out.append(md.to_text(block.intro))
        out.extend(_link(item) for item in block.items)
        if block.outro:
            out.append(md.to_text(block.outro))
    elif isinstance(block, FocusBlock):
        for topic in block.topics:
            out.append(topic.heading.upper())
            out.append(md.to_text(topic.body))
            out.extend(_reply(r) for r in topic.replies)
            if topic.cta:
                cta = md.to_text(topic.cta.text)
                if topic.cta.button and topic.cta.url:
                    cta += f"\n{topic.cta.button} <{topic.cta.url}>"
                out.append(cta)
            out.append(THIN)
        if out and out[-1] == THIN:
            out.pop()
    elif isinstance(block, RegionsBlock):
        for region in block.regions:
            out.append(f"{THIN}\n{region.name.upper()}\n{THIN}")
            if region.spotlight:
                out.append(region.spotlight_label or words("Spotlight:"))
                out.extend(_story(region.spotlight, words))
            if region.other_news_label or region.other_news:
                items = [_link(item) for item in region.other_news]
                out.append("\n".join([region.other_news_label or "", *items]).strip())
            if region.explore:
                out.append(_link(region.explore))
    elif isinstance(block, TextBlock) and block.body:
        out.append(md.to_text(block.body))
    return out


def _section(block: AnyBlock, words: Words) -> str:
    """One section's text, marked with its own direction if it has one."""
    text = "\n\n".join(p for p in _block(block, words) if p)
    way = block.dir or (direction(block.lang) if block.lang else None)
    return mark_direction(text, way) if way and way != words.dir else text


def render_text(
    issue: Issue, subscriber: Placeholders, web: bool = False, words: Words | None = None
) -> str:
    """The whole text part, tokens in place of per-subscriber values."""
    nl = issue.newsletter
    words = words or Words(issue.language, nl.strings)
    view = nl.footer.view_online_label or words("View in browser")
    parts = [f"{nl.title}\n{words.date(issue.date)} · {nl.organisation}"]
    if issue.headline:
        parts.append(issue.headline)
    if not web:
        parts.append(f"{view}: <{subscriber.view_url}>")
    parts.extend(_section(block, words) for block in issue.sections)
    footer = [THIN]
    footer.extend(_link(link) for link in nl.footer.links)
    parts.append("\n".join(footer))
    if nl.footer.reason:
        parts.append(md.to_text(nl.footer.reason))
    else:
        parts.append(
            words("You are receiving %(title)s because you subscribed to it.", title=nl.title)
        )
    parts.append(nl.footer.address.strip())
    if not web:
        parts.append(
            words("This email was sent to %(email)s.", email=subscriber.email)
            + f"\n{nl.footer.unsubscribe_label or words('Unsubscribe')}: "
            f"<{subscriber.unsubscribe_url}>\n{view}: <{subscriber.view_url}>"
        )
    text = "\n\n".join(p for p in parts if p) + "\n"
    return mark_direction(text, "rtl") if words.dir == "rtl" else text
