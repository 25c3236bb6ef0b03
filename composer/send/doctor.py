"""``newsletter doctor``: is this newsletter ready to send? One line per check,
with how to fix what is not.

Local checks (settings, keys, the latest issue) always run; the network ones
(DNS records, the one-click endpoint over https) unless ``offline``. DNS goes to
``NEWSLETTER_DNS_SERVER`` when set, else the system's resolver.
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from composer.config import Settings
from composer.errors import ComposerError
from composer.issue.checks import GMAIL_CLIP_BYTES
from composer.issue.files import issue_files
from composer.mail.addresses import domain_of, normalise
from composer.send import preflight
from composer.send.signing import dkim_signer


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not checked (offline, or nothing to check)
    detail: str  # what was found, or what to do


def doctor(settings: Settings, offline: bool) -> list[Check]:
    checks = [*_settings(settings), _issue(settings)]
    keys = _keys(settings)
    checks.append(keys[0])
    if offline:
        checks.append(Check("DNS and https", None, "not checked (--offline)"))
        return checks
    checks += [
        *_dkim_records(settings, keys[1]),
        _spf(settings),
        _dmarc(settings),
        _mailbox(settings),
        _one_click(settings),
    ]
    return checks


def _settings(settings: Settings) -> list[Check]:
    found = preflight.problems(settings)
    if not found:
        return [Check("settings", True, f"From {settings.from_address}, links {settings.base_url}")]
    return [Check("settings", False, problem) for problem in found]


def _issue(settings: Settings) -> Check:
    from composer.send.prepare import prepare

    files = issue_files(settings.home / "issues")
    if not files:
        return Check("latest issue", None, "no issue yet: newsletter new")
    latest = files[-1]
    try:
        prepared = prepare(str(latest), settings)
    except ComposerError as exc:
        return Check("latest issue", False, str(exc).splitlines()[0])
    if prepared.errors:
        return Check(
            "latest issue",
            False,
            f"{latest.name}: {len(prepared.errors)} error(s); see newsletter check {latest.stem}",
        )
    size = prepared.rendered.html_bytes
    if size > GMAIL_CLIP_BYTES:
        return Check(
            "latest issue",
            False,
            f"{latest.name}: the HTML part is {size / 1000:.0f} KB; Gmail clips at "
            f"{GMAIL_CLIP_BYTES / 1000:.0f} KB: shorten it",
        )
    return Check("latest issue", True, f"{latest.name}: {size / 1000:.0f} KB, under the clip")


def _keys(settings: Settings) -> tuple[Check, list[tuple[str, str, bytes]]]:
    """The keys check, and (selector, domain, public key as published) for each key."""
    try:
        signer = dkim_signer(settings)
    except ComposerError as exc:
        return Check("DKIM keys", False, str(exc)), []
    if signer is None:
        return (
            Check(
                "DKIM keys",
                False,
                "none: make one with newsletter dkim keygen --selector news2026, publish "
                "its record and add the two settings it prints",
            ),
            [],
        )
    from composer.mail.dkim import dns_record

    published = [(k.selector, k.domain, _tag(dns_record(k.key), "p").encode()) for k in signer.keys]
    names = ", ".join(f"{k.algorithm} s={k.selector} d={k.domain}" for k in signer.keys)
    return Check("DKIM keys", True, names), published


def _tag(record: str, name: str) -> str:
    for part in record.split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            return "".join(value.split())
    return ""


def _txt(name: str, settings: Settings, prefix: str) -> str | None:
    from composer.mail.dns import txt_records

    for record in txt_records(name, settings.dns_server):
        if record.replace(" ", "").lower().startswith(prefix.lower()):
            return record
    return None


def _network(name: str, settings: Settings, check: str, prefix: str) -> Check | str:
    """The TXT record at ``name`` starting with ``prefix`` ('' when there is none),
    or a Check saying the look-up failed."""
    try:
        return _txt(name, settings, prefix) or ""
    except ComposerError as exc:
        return Check(check, False, str(exc))


def _dkim_records(settings: Settings, keys: list[tuple[str, str, bytes]]) -> list[Check]:
    out = []
    for selector, domain, public in keys:
        name = f"{selector}._domainkey.{domain}"
        record = _network(name, settings, "DKIM record", "v=DKIM1")
        if isinstance(record, Check):
            out.append(record)
        elif not record:
            out.append(
                Check("DKIM record", False, f"no record at {name}: publish the one keygen printed")
            )
        elif _tag(record, "p").encode() != public:
            out.append(
                Check(
                    "DKIM record",
                    False,
                    f"{name} publishes another key: publish this key's record "
                    "(newsletter dkim keygen printed it), or set the key it names",
                )
            )
        else:
            out.append(Check("DKIM record", True, f"{name} matches the key"))
    return out


def _spf(settings: Settings) -> Check:
    """An SPF record that authorises somebody and not everybody. Whether it covers
    the relay cannot be told from here: the address we reach a relay at is seldom the
    one it delivers from (SES, Google and most others send from other networks,
    named by the include: their documentation gives), so that is advice, not a fix."""
    domain = settings.mail_domain
    record = _network(domain, settings, "SPF", "v=spf1")
    if isinstance(record, Check):
        return record
    if not record:
        return Check(
            "SPF",
            False,
            f"no SPF record at {domain}: publish one that includes your relay, e.g. "
            '"v=spf1 include:<your relay\'s SPF domain> -all"',
        )
    terms = record.lower().split()[1:]
    if any(t in ("+all", "all") for t in terms):
        return Check(
            "SPF",
            False,
            f"{domain}: {record}: +all lets anyone send as {domain}; end it with -all or ~all",
        )
    senders = ("include:", "ip4:", "ip6:", "a", "a:", "mx", "mx:", "redirect=", "exists:")
    if not any(t.lstrip("+?~").startswith(senders) for t in terms):
        return Check(
            "SPF",
            False,
            f"{domain}: {record}: authorises no sender; add your relay's include:",
        )
    relay = settings.smtp_host.lower()
    if relay and not any(part in record.lower() for part in _relay_names(relay)):
        return Check(
            "SPF",
            True,
            f"{domain}: {record} (make sure it includes {relay}'s sending networks: its "
            "documentation gives the include:)",
        )
    return Check("SPF", True, f"{domain}: {record}")


def _relay_names(host: str) -> list[str]:
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def _dmarc(settings: Settings) -> Check:
    domain = settings.mail_domain
    names = [f"_dmarc.{domain}"]
    if domain.count(".") > 1:  # the organisational domain's policy covers subdomains
        names.append("_dmarc." + ".".join(domain.split(".")[-2:]))
    for name in names:
        record = _network(name, settings, "DMARC", "v=DMARC1")
        if isinstance(record, Check):
            return record
        if not record:
            continue
        if not _tag(record, "p"):
            return Check("DMARC", False, f"{name}: {record}: no p= policy; add p=none at least")
        dkim_domain = (settings.dkim_domain or domain).lower()
        if _tag(record, "adkim") == "s" and dkim_domain != domain:
            return Check(
                "DMARC",
                False,
                f"{name} asks for strict DKIM alignment (adkim=s) but messages are signed "
                f"for {dkim_domain}, not {domain}: sign with the From domain",
            )
        return Check("DMARC", True, f"{name}: {record}")
    return Check(
        "DMARC",
        False,
        f"no DMARC record at _dmarc.{domain}: publish one, p=none at least, e.g. "
        f'"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"',
    )


def _mailbox(settings: Settings) -> Check:
    from composer.mail.dns import has_mail_host

    try:
        mailbox = normalise(settings.unsubscribe_mailbox)
        found = has_mail_host(domain_of(mailbox), settings.dns_server)
    except ComposerError as exc:
        return Check("unsubscribe mailbox", False, str(exc))
    if not found:
        return Check(
            "unsubscribe mailbox",
            False,
            f"{mailbox}: its domain takes no mail (no MX or address record); set "
            "NEWSLETTER_UNSUBSCRIBE_MAILTO to a mailbox you read",
        )
    return Check("unsubscribe mailbox", True, f"{mailbox}: its domain takes mail")


def _one_click(settings: Settings) -> Check:
    """POST a one-click unsubscribe with a token that is nobody's: `newsletter serve`
    answers 400 (invalid link) over https when it is reachable where links point."""
    url = f"{settings.base_url}/unsubscribe/doctor.{base64.urlsafe_b64encode(b'x').decode()}"
    if not url.startswith("https://"):
        return Check("one-click", False, f"{settings.base_url} is not https: set it first")
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    context = ssl.create_default_context()  # the system's CAs (or SSL_CERT_FILE)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "one-click",
            False,
            f"{settings.base_url} does not answer over https ({reason}): run newsletter "
            "serve behind your https server at that address",
        )
    if status != 400:
        return Check(
            "one-click",
            False,
            f"POST {settings.base_url}/unsubscribe/... answered {status}, not "
            "newsletter serve's 400 for a link that is nobody's: is it serving there?",
        )
    return Check("one-click", True, f"{settings.base_url} answers the one-click POST over https")
