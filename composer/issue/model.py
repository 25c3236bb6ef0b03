"""The issue definition: what an editor writes in ``issues/YYYY-MM-DD.yaml``.

Every model forbids unknown keys so that a typo (``headlne:``) is an error
with a line number, not a silently missing story. Text fields marked
"Markdown" accept CommonMark (paragraphs, **bold**, *italic*, [links](url));
raw HTML in them is shown as text, never passed through.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_ONE_LINE = (
    "subject",
    "preheader",
    "headline",
    "title",
    "kicker",
    "label",
    "name",
    "heading",
    "organisation",
    "byline",
    "alt",
    "button",
    "spotlight_label",
    "author",
    "source",
    "other_news_label",
    "see_also_label",
    "unsubscribe_label",
    "view_online_label",
    "strings",
)


# Rendering stands these in for per-subscriber values (see render.fields);
# an issue's own text must not contain them.
RESERVED_PREFIX = "__nlfield_"


def _check_text(value: object, one_line: bool) -> object:
    if isinstance(value, list):
        return [_check_text(v, one_line) for v in value]
    if isinstance(value, dict):  # ``strings``; an edition's overlay is checked merged
        return {k: _check_text(v, one_line) if isinstance(v, str) else v for k, v in value.items()}
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found:
            raise ValueError(
                f"contains the control character U+{ord(found.group()):04X}; remove it"
            )
        if RESERVED_PREFIX in value:
            raise ValueError(f"contains the reserved text {RESERVED_PREFIX}; remove it")
        if one_line and ("\n" in value or "\r" in value):
            raise ValueError("must be one line")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object, info: object) -> object:
        """Control characters break MJML and headers: refuse them everywhere;
        titles, subjects and the like must also be one line."""
        name = getattr(info, "field_name", "")
        return _check_text(value, name in _ONE_LINE)


Markdown = Annotated[str, Field(description="CommonMark text: paragraphs, emphasis, links")]
Url = Annotated[str, Field(description="An absolute https:// (or http://, mailto:) address")]


class Image(_Model):
    """An image; ``alt`` describes it for screen readers and blocked images."""

    src: Url
    alt: str = Field("", description="Text alternative; required unless decorative=true")
    decorative: bool = Field(False, description="Purely decorative: read as nothing")
    width: int | None = Field(None, ge=1, le=600, description="Display width in px")
    href: Url | None = None


class Link(_Model):
    """One entry of a link list: ``Briefing | Bitter truth ... — note``."""

    title: str = Field(description="The link text")
    url: Url
    label: str | None = Field(None, description="Kind of item shown before a bar: 'Briefing'")
    byline: str | None = Field(None, description="Author line: 'Sarah Lince, Verité'")
    note: Markdown | None = Field(None, description="Text after the link, after an em dash")


class Reply(_Model):
    """Right of reply: did the companies named respond to the allegations?"""

    status: Literal["responded", "no_response", "statement"] = Field(
        description="responded (💬), no_response (❌) or statement (free text)"
    )
    companies: list[str] = Field(default_factory=list, description="Companies the note is about")
    text: Markdown

    @property
    def icon(self) -> str:
        return REPLY_ICONS[self.status][0]

    @property
    def icon_label(self) -> str:
        return REPLY_ICONS[self.status][1]


REPLY_ICONS = {
    "responded": ("💬", "Company response"),
    "no_response": ("❌", "No response"),
    "statement": ("", ""),
}


class CallToAction(_Model):
    """A highlighted invitation, with an optional button."""

    text: Markdown
    button: str | None = Field(None, description="Button label; needs url")
    url: Url | None = None


class Story(_Model):
    """A story: the lead, or a region's spotlight."""

    kicker: str | None = Field(None, description="Country or theme before the headline: 'USA'")
    headline: str
    url: Url | None = Field(None, description="Where the headline links to")
    sources: list[str] = Field(default_factory=list, description="Outlets: 'Mother Jones'")
    image: Image | None = None
    body: Markdown
    replies: list[Reply] = Field(default_factory=list)
    see_also: Markdown | None = Field(None, description="Shown after see_also_label")
    see_also_label: str | None = Field(None, description="Default: the theme's 'See also:'")


class Topic(_Model):
    """A thematic 'in focus' topic."""

    heading: str
    body: Markdown
    replies: list[Reply] = Field(default_factory=list)
    cta: CallToAction | None = None


class Region(_Model):
    """A regional section: spotlight, other news and an 'explore all' link."""

    name: str
    spotlight_label: str | None = Field(None, description="Default: the theme's 'Spotlight:'")
    spotlight: Story | None = None
    other_news_label: str | None = Field(None, description="'Other news from the region:'")
    other_news: list[Link] = Field(default_factory=list)
    explore: Link | None = Field(None, description="'Explore all news from Africa ➡️'")


LanguageTag = Annotated[
    str,
    Field(
        pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$",
        description="A language tag (BCP 47): 'en', 'es', 'ar', 'pt-BR'",
    ),
]


class _Block(_Model):
    """What every section has: its language and direction, when they differ
    from the edition's (an Arabic quote in an English issue)."""

    lang: LanguageTag | None = Field(None, description="This section's language")
    dir: Literal["ltr", "rtl"] | None = Field(
        None, description="This section's direction; default: from lang, else the edition's"
    )


class LeadBlock(_Block):
    type: Literal["lead"]
    heading: str | None = None
    story: Story


class LinksBlock(_Block):
    type: Literal["links"]
    heading: str | None = None
    intro: Markdown | None = None
    items: list[Link] = Field(default_factory=list)
    outro: Markdown | None = None


class FocusBlock(_Block):
    type: Literal["focus"]
    heading: str | None = None
    topics: list[Topic]


class RegionsBlock(_Block):
    type: Literal["regions"]
    heading: str | None = None
    regions: list[Region]


class TextBlock(_Block):
    type: Literal["text"]
    heading: str | None = None
    body: Markdown = ""


class CalloutBlock(_Block):
    """A boxed note: an announcement, a correction, a warning."""

    type: Literal["callout"]
    heading: str | None = None
    body: Markdown
    tone: Literal["note", "important"] = Field(
        "note", description="note (quiet) or important (the accent colour)"
    )


class ButtonBlock(_Block):
    """A call to action: a line of text and a button (a table cell: it works in Outlook)."""

    type: Literal["button"]
    heading: str | None = None
    text: Markdown | None = Field(None, description="What the button is for, above it")
    label: str = Field(description="The button's text: 'Register now'")
    url: Url


class ImageBlock(_Block):
    """An image across the column, with an optional caption."""

    type: Literal["image"]
    heading: str | None = None
    image: Image
    caption: Markdown | None = None


class QuoteBlock(_Block):
    """A quotation, with who said it."""

    type: Literal["quote"]
    heading: str | None = None
    text: Markdown
    author: str | None = Field(None, description="Who said it: 'Aiko Tanaka'")
    source: str | None = Field(None, description="Where: 'at StellarConf 2025'")
    url: Url | None = Field(None, description="Where the quote comes from")


class DividerBlock(_Block):
    """A rule between sections."""

    type: Literal["divider"]
    heading: None = Field(None, description="A divider has no heading")


# The one declaration of the section types: the schema's union, the names
# ``type:`` accepts, the blocks/ partial a theme needs for each, and ``new``'s
# emptying all derive from this tuple.
AnyBlock = (
    LeadBlock
    | LinksBlock
    | FocusBlock
    | RegionsBlock
    | TextBlock
    | CalloutBlock
    | ButtonBlock
    | ImageBlock
    | QuoteBlock
    | DividerBlock
)
BLOCK_CLASSES: tuple[type[_Model], ...] = get_args(AnyBlock)
BLOCK_TYPES: tuple[str, ...] = tuple(
    get_args(cls.model_fields["type"].annotation)[0] for cls in BLOCK_CLASSES
)
Block = Annotated[AnyBlock, Field(discriminator="type")]


class Footer(_Model):
    links: list[Link] = Field(default_factory=list, description="Company responses, rejoinders")
    address: str = Field(description="The organisation's postal address (required by CAN-SPAM)")
    reason: Markdown | None = Field(None, description="Why the reader gets this email")
    unsubscribe_label: str | None = Field(None, description="Default: the theme's 'Unsubscribe'")
    view_online_label: str | None = Field(
        None, description="Default: the theme's 'View in browser'"
    )


class Newsletter(_Model):
    """What stays the same from issue to issue."""

    title: str = Field(description="'Weekly Update'")
    organisation: str
    url: Url = Field(description="The organisation's home page")
    language: LanguageTag = Field("en", description="The main edition's language")
    theme: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    logo: Image | None = None
    footer: Footer
    reply_to: str | None = Field(
        None,
        description="Where replies go (Reply-To), e.g. 'editor@example.org'",
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
    )
    strings: dict[str, str] = Field(
        default_factory=dict,
        description="The theme's own words replaced: {'View in browser': 'Read online'}; "
        "see `newsletter strings`",
    )


class Issue(_Model):
    """One issue of the newsletter."""

    newsletter: Newsletter
    date: dt.date
    subject: str = Field(min_length=1, max_length=200)
    preheader: str = Field(description="Inbox preview line after the subject", max_length=250)
    headline: str | None = Field(
        None, description="A line shown under the masthead (the subject is the email's own title)"
    )
    theme: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    sections: list[Block]
    editions: dict[LanguageTag, dict[str, Any]] = Field(
        default_factory=dict,
        description="Other languages' editions, keyed by language: each gives what "
        "differs from the main edition (subject, preheader, headline, newsletter, "
        "sections), in the same structure; the rest is shared",
    )

    @property
    def language(self) -> str:
        return self.newsletter.language

    @property
    def theme_name(self) -> str:
        return self.theme or self.newsletter.theme

    @property
    def slug(self) -> str:
        return self.date.isoformat()


# Labels an issue may set and otherwise takes from the theme's words.
_LABELS: dict[type[BaseModel], dict[str, str]] = {
    Footer: {"unsubscribe_label": "Unsubscribe", "view_online_label": "View in browser"},
    Story: {"see_also_label": "See also:"},
    Region: {"spotlight_label": "Spotlight:"},
}


def with_labels(value: Any, words: Callable[[str], str]) -> Any:
    """``value`` with every label it leaves unset filled in by ``words`` (the
    theme's words in the edition's language), so that a theme printing
    ``f.unsubscribe_label`` (as themes copied before catalogs did) shows it in
    the edition's language."""
    if isinstance(value, BaseModel):
        update = {
            name: with_labels(getattr(value, name), words) for name in type(value).model_fields
        }
        for name, message in _LABELS.get(type(value), {}).items():
            if update[name] is None:
                update[name] = words(message)
        return value.model_copy(update=update)
    if isinstance(value, list):
        return [with_labels(v, words) for v in value]
    return value


def json_schema() -> dict[str, object]:
    schema = Issue.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "newsletter-composer issue"
    return schema
