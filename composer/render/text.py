"""The plain-text part, written from the issue model (not from the HTML).

Layout conventions: section headings in capitals between rules, a blank line
between paragraphs, links as ``text <url>``, no hard wrapping (phones reflow
text; hard breaks at 72 columns look ragged there). Per-subscriber values are
tokens (see ``fields``).
"""

from __future__ import annotations

from composer.issue import markdown as md
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


def _story(story: Story) -> list[str]:
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
        out.append(f"{story.see_also_label} {md.to_text_inline(story.see_also)}")
    return out


def _heading(text: str | None) -> list[str]:
    return [f"{RULE}\n{text.upper()}\n{RULE}"] if text else []


def _block(block: AnyBlock) -> list[str]:
    out = _heading(block.heading)
    if isinstance(block, LeadBlock):
        out.extend(_story(block.story))
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
                out.append(region.spotlight_label)
                out.extend(_story(region.spotlight))
            if region.other_news_label or region.other_news:
                items = [_link(item) for item in region.other_news]
                out.append("\n".join([region.other_news_label or "", *items]).strip())
            if region.explore:
                out.append(_link(region.explore))
    elif isinstance(block, TextBlock) and block.body:
        out.append(md.to_text(block.body))
    return out


def render_text(issue: Issue, subscriber: Placeholders, web: bool = False) -> str:
    """The whole text part, tokens in place of per-subscriber values."""
    nl = issue.newsletter
    parts = [
        f"{nl.title} · {issue.date.strftime('%-d %B %Y')}\n{nl.organisation}",
        issue.headline or issue.subject,
    ]
    if not web:
        parts.append(f"{nl.footer.view_online_label}: <{subscriber.view_url}>")
    for block in issue.sections:
        parts.extend(_block(block))
    footer = [THIN]
    footer.extend(_link(link) for link in nl.footer.links)
    parts.append("\n".join(footer))
    if nl.footer.reason:
        parts.append(md.to_text(nl.footer.reason))
    parts.append(nl.footer.address.strip())
    if not web:
        parts.append(
            f"This email was sent to {subscriber.email}.\n"
            f"{nl.footer.unsubscribe_label}: <{subscriber.unsubscribe_url}>\n"
            f"{nl.footer.view_online_label}: <{subscriber.view_url}>"
        )
    return "\n\n".join(p for p in parts if p) + "\n"
