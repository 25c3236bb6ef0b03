"""The theme's own words: which there are, and the catalogs that translate them.

The catalogs themselves are read in ``render.i18n``; ``check`` only needs to
know the words (``newsletter.strings`` may replace any of them) and which
languages have a catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

# Every word a bundled theme, the text part and the archive use, with where it
# appears: the catalogs hold exactly these, and ``newsletter.strings`` may
# replace any of them (a test keeps the three in step).
WORDS: dict[str, str] = {
    "View in browser": "link at the top and in the footer to the web version",
    "Unsubscribe": "the footer's unsubscribe link",
    "This email was sent to %(email)s.": "footer; email is the reader's address",
    "You are receiving %(title)s because you subscribed to it.": (
        "footer, when the newsletter gives no footer.reason; title is the newsletter's"
    ),
    "See also:": "before a story's related links",
    "Spotlight:": "before a region's main story",
    "Company response": "read aloud for the 💬 of a right-of-reply note",
    "No response": "read aloud for the ❌ of a right-of-reply note",
    "%(title)s: archive": "the archive page's title",
    "Every issue, newest first.": "the archive page's introduction",
    "Atom feed": "link to the archive's feed",
    "No issue has been sent yet.": "an empty archive",
    "Other languages:": "web version: before the links to the other editions",
    "Unsubscribe?": "the page an unsubscribe link opens: its title",
    "Stop sending the newsletter to %(email)s?": (
        "that page's question; email is the reader's address"
    ),
    "You are unsubscribed": "the page after unsubscribing: its title",
    "You will get no more newsletters from us. Sorry to see you go.": (
        "the page after unsubscribing"
    ),
    "This address gets no more newsletters from us.": (
        "an unsubscribe link of someone already unsubscribed"
    ),
}
PLACEHOLDER_RE = re.compile(r"%\((\w+)\)s")


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER_RE.findall(text))


def catalog_languages() -> list[str]:
    return sorted(p.stem for p in LOCALE_DIR.glob("*.po"))


def has_catalog(language: str) -> bool:
    code = language.replace("-", "_")
    return any((LOCALE_DIR / f"{n}.po").is_file() for n in (code, code.split("_")[0].lower()))
