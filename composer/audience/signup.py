"""Sign-up with double opt-in: what the form offers, and judging what is posted.

Nobody is subscribed by a form: a sign-up that passes the checks is recorded
and sent a confirmation link, and only the POST of the button that link's
page shows makes a subscriber (``store.signups``). Every post gets the same
answer, whatever happens to it, so that the form tells nobody who subscribes.

Against bots, without a third party:
- a field people never see (a honeypot): filled in, the post is dropped;
- a signed timestamp given with the form: a post sooner than
  ``NEWSLETTER_SIGNUP_MIN_SECONDS`` after the form was shown is dropped, and
  one without a timestamp (a form on another site) gets our form back, filled
  in, to send once more;
- at most ``NEWSLETTER_SIGNUP_PER_IP_HOUR`` confirmation mails an hour from
  one client address and one per address every
  ``NEWSLETTER_SIGNUP_ADDRESS_MINUTES`` (``Signups.request``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from composer.audience.tokens import sign_claim, verify_claim
from composer.config import Settings
from composer.errors import SubscriberError
from composer.mail.addresses import normalise
from composer.mail.message import clean

FORM = "form"
FORM_MAX_AGE = 86400.0  # a form left open longer is shown again
HONEYPOT = "website"  # the field people never see


def form_token(settings: Settings, now: float | None = None) -> str:
    """The signed moment the form was shown."""
    ms = int((time.time() if now is None else now) * 1000)
    return sign_claim(settings.secret_key.get(), FORM, str(ms))


def form_age(settings: Settings, token: str, now: float | None = None) -> float | None:
    """Seconds since the form carrying ``token`` was shown; None for a token we
    did not make."""
    fields = verify_claim(settings.verify_keys, FORM, token)
    if not fields or len(fields) != 1 or not fields[0].isdigit():
        return None
    return (time.time() if now is None else now) - int(fields[0]) / 1000


@dataclass(frozen=True)
class Posted:
    """A sign-up form as posted (urlencoded, multipart or JSON), every field text."""

    email: str
    name: str
    language: str
    lists: tuple[str, ...]
    honeypot: str
    token: str
    page: str

    @classmethod
    def read(cls, fields: Mapping[str, object]) -> Posted:
        def text(name: str, limit: int = 400) -> str:
            value = fields.get(name, "")
            if isinstance(value, list):
                value = value[0] if value else ""
            return value[:limit] if isinstance(value, str) else ""

        raw_lists = fields.get("lists", [])
        if isinstance(raw_lists, str):
            raw_lists = [raw_lists]
        lists = (
            tuple(x for x in raw_lists if isinstance(x, str))[:50]
            if isinstance(raw_lists, list | tuple)
            else ()
        )
        return cls(
            email=text("email", 320),
            name=text("name", 200),
            language=text("language", 35),
            lists=lists,
            honeypot=text(HONEYPOT),
            token=text("t", 200),
            page=text("page"),
        )


ACCEPT = "accept"  # record it and mail a confirmation (limits permitting)
DROP = "drop"  # a bot: the same answer, nothing done
AGAIN = "again"  # no timestamp (a form elsewhere): our form back, filled in
INVALID = "invalid"  # not an email address: the form again, saying so


@dataclass(frozen=True)
class Verdict:
    kind: str
    email: str = ""
    name: str = ""
    language: str = ""
    lists: tuple[str, ...] = ()


def judge(
    settings: Settings,
    posted: Posted,
    edition: Callable[[str], str],
    lists: Sequence[str],
    now: float | None = None,
) -> Verdict:
    """What to do with a posted sign-up (see the module's docstring): ``edition``
    gives the edition a language reads, ``lists`` are the lists offered."""
    if posted.honeypot.strip():
        return Verdict(DROP)
    try:
        email = normalise(posted.email)
    except SubscriberError:
        return Verdict(INVALID)
    language = edition(posted.language.strip())
    chosen_lists = tuple(chosen(posted.lists, lists))
    name = clean(posted.name, 120)
    if not posted.token:
        return Verdict(AGAIN, email, name, language, chosen_lists)
    age = form_age(settings, posted.token, now)
    if age is None or age < settings.signup_min_seconds or age > FORM_MAX_AGE:
        return Verdict(DROP)
    return Verdict(ACCEPT, email, name, language, chosen_lists)


def chosen(values: Sequence[str], offered: Sequence[str]) -> list[str]:
    """The offered items among ``values``, in the offer's order."""
    wanted = set(values)
    return [x for x in offered if x in wanted]
