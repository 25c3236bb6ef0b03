"""The one address policy: what we accept as a subscriber's (or our own) address.

Used at import, when adding a subscriber, for the From address and again for
every message at send time, so that nothing the database holds can reach an
SMTP envelope or a header unless it passes the same rules:

trimmed, Unicode NFC, validated by email-validator without DNS, the domain in
ASCII (IDNA) so that it can go on the wire without SMTPUTF8, and the whole
address lower-cased so that ``Ana@X.org`` and ``ana@x.org`` are one subscriber
(providers treat local parts case-insensitively in practice).

The only module that imports email-validator.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from composer import memo
from composer.errors import SubscriberError

_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _validate(text: str) -> str:
    # Imported here: compiling its patterns takes 20 ms, which a command that
    # checks no address (``build``, ``--help``) need not pay.
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{text!r} is not a valid email address: {exc}") from None
    return str(result.ascii_email or result.normalized).lower()


_ASCII_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")


@lru_cache(maxsize=8192)
def _ascii_domain(domain: str) -> str:
    """email-validator's verdict on a domain, kept: lists repeat a few domains
    endlessly, and the domain check (IDNA, UTS-46) is most of its cost. Between
    processes too (``composer.memo``): a ``build`` checks the same From domain
    every time, and would otherwise import email-validator for it (20 ms)."""

    def plausible(kept: object) -> bool:  # a kept answer, vetted all the same
        return (
            isinstance(kept, str)
            and _ASCII_DOMAIN.fullmatch(kept) is not None
            and _spells(kept, domain)
        )

    return memo.recall(
        "domain",
        domain,
        lambda: memo.versions("email-validator", "idna"),
        lambda: _validate(f"x@{domain}").partition("@")[2],
        plausible,
    )


def _spells(ascii_domain: str, domain: str) -> bool:
    """Whether ``ascii_domain`` is ``domain``, label for label, as written or
    in Punycode (a kept answer that is not, say for a domain that UTS-46 maps,
    is simply worked out again)."""
    theirs, mine = ascii_domain.split("."), domain.split(".")
    if len(theirs) != len(mine):
        return False
    for label, own in zip(theirs, mine, strict=True):
        if label.startswith("xn--") and not own.isascii():
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                return False
        if label != own:
            return False
    return True


def normalise(raw: str) -> str:
    """The address in its one stored and sent form, or ``SubscriberError``."""
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        raise SubscriberError("the email address is empty")
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and _DOT_ATOM.fullmatch(local):
        try:
            return f"{local}@{_ascii_domain(domain.lower())}".lower()
        except SubscriberError:
            pass  # let the full check word the error for the whole address
    return _validate(text)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
