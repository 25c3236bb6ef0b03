"""What must be right before anything goes to a real relay (test copies too).

A send with the defaults of a fresh install (From an example.org address,
unsubscribe links to http://127.0.0.1) would reach thousands of inboxes with
links that lead nowhere and a From that fails every check: refused here, with
what to set. ``NEWSLETTER_ALLOW_TEST_SETUP=1`` lets loopback links and example
domains through, for tests against a local server only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from composer.config import Settings
from composer.errors import SendError, SubscriberError
from composer.mail.addresses import domain_of, normalise

_RESERVED = ("example.com", "example.net", "example.org", "localhost")
_RESERVED_TLDS = ("example", "test", "invalid", "localhost", "local")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def reserved_domain(domain: str) -> bool:
    """RFC 2606 / 6761 names that can never receive or vouch for real mail."""
    domain = domain.lower().rstrip(".")
    if domain in _RESERVED or any(domain.endswith("." + r) for r in _RESERVED[:3]):
        return True
    return domain.rpartition(".")[2] in _RESERVED_TLDS


def aligned(from_domain: str, dkim_domain: str) -> bool:
    """DMARC's relaxed alignment, approximately: the same domain, or one under the other."""
    a, b = from_domain.lower(), dkim_domain.lower()
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def check_ready(settings: Settings) -> None:
    """SendError naming the first setting that would make a real send go wrong."""
    found = problems(settings) if settings.uses_smtp else []
    if found:
        raise SendError(found[0])


def problems(settings: Settings) -> list[str]:
    """Every setting that would make a send to a real relay go wrong, one line each
    with what to do."""
    out = []
    testing = settings.allow_test_setup
    url = urlsplit(settings.base_url)
    host = (url.hostname or "").lower()
    if url.scheme != "https" and not (testing and host in _LOOPBACK):
        out.append(
            f"NEWSLETTER_BASE_URL={settings.base_url} is not https: the unsubscribe and "
            "view-in-browser links must reach `newsletter serve` over https; set it to the "
            "public https address of your server"
        )
    elif host in _LOOPBACK and not testing:
        out.append(
            f"NEWSLETTER_BASE_URL={settings.base_url} points at this machine; set it to the "
            "public https address of your server"
        )
    from_domain = settings.mail_domain
    if reserved_domain(from_domain) and not testing:
        out.append(
            f"NEWSLETTER_FROM={settings.from_address} is not a real sender ({from_domain} "
            "is reserved); set it to an address at your own domain"
        )
    if settings.dkim_rsa or settings.dkim_ed25519:
        dkim_domain = settings.dkim_domain or from_domain
        if not aligned(from_domain, dkim_domain):
            out.append(
                f"DKIM_DOMAIN={dkim_domain} is not aligned with the From domain {from_domain}: "
                "receivers' DMARC checks would fail; sign with the From domain (or a parent)"
            )
    try:
        mailbox = normalise(settings.unsubscribe_mailbox)
    except SubscriberError as exc:
        out.append(f"NEWSLETTER_UNSUBSCRIBE_MAILTO: {exc}")
    else:
        if reserved_domain(domain_of(mailbox)) and not testing:
            out.append(
                f"the List-Unsubscribe mailto address {mailbox} is at a reserved domain; set "
                "NEWSLETTER_UNSUBSCRIBE_MAILTO to a mailbox you read (or fix NEWSLETTER_FROM)"
            )
    return out
