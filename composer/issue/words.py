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
    "Subscribe to %(title)s": "the sign-up page's title; title is the newsletter's",
    "Email address": "sign-up form: the address field",
    "Name (optional)": "sign-up and preferences forms: the name field",
    "Lists": "sign-up and preferences forms: the lists to choose from",
    "Language": "sign-up and preferences forms: the edition's language",
    "Subscribe": "sign-up form: the button",
    (
        "I agree to receive %(title)s by email. I can unsubscribe at any time with the link in "
        "every issue."
    ): ("sign-up form: the consent text, unless NEWSLETTER_CONSENT_TEXT gives one"),
    "Leave this field empty": "sign-up form: a field people never see (it catches bots)",
    "Check your inbox": "the page after signing up: its title",
    (
        "If the address you gave can receive it, a message with a confirmation link is on its "
        "way. Your subscription starts when you confirm."
    ): ("the page after signing up (the same whoever signs up)"),
    "Please enter a valid email address.": "sign-up form: the address is not one",
    "One more step: press Subscribe to send your request.": (
        "sign-up form posted from another site: ours, filled in, to send once more"
    ),
    "Confirm your subscription": (
        "the confirmation mail's subject and the confirmation page's title"
    ),
    "Please confirm that %(email)s should receive %(title)s.": (
        "confirmation mail and page; email is the address that signed up"
    ),
    "Yes, subscribe me": "confirmation mail's link and the confirmation page's button",
    "If you did not ask for this, ignore this message: nothing will be sent to you.": (
        "confirmation mail"
    ),
    "This link works for %(days)s days.": "confirmation mail; days is a number",
    "You are subscribed": "the page after confirming: its title",
    "Welcome! %(email)s will receive %(title)s.": "the page after confirming, and the welcome mail",
    "This confirmation link is not valid or has expired": "a confirmation link that cannot be used",
    "Sign up again to get a new link.": "after an expired confirmation link; links to the form",
    "Welcome to %(title)s": "the welcome mail's subject",
    "Preferences": "the footer's link to the preferences page",
    "Your preferences": "the preferences page's title",
    "Save": "the preferences page's button",
    "Your preferences are saved.": "the preferences page after saving",
    "Change what you receive, or unsubscribe.": (
        "the preferences page's introduction and the welcome mail's link text"
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
