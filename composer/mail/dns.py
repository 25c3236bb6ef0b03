"""DNS look-ups (dnspython), for the checks that need published records.

``NEWSLETTER_DNS_SERVER`` (host or host:port) names the server to ask; by
default the system's resolver. Errors name the record and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from composer.errors import ComposerError

if TYPE_CHECKING:
    import dns.resolver

TIMEOUT = 5.0


def txt_records(name: str, server: str = "") -> list[str]:
    """The TXT records at ``name`` (each one's strings joined); [] if none."""
    import dns.exception
    import dns.resolver

    resolver = _resolver(server)
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        where = server or "the system's resolver"
        raise ComposerError(f"DNS: cannot look up {name} TXT at {where}: {exc}") from None
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def dkim_record(name: str, server: str = "") -> str | None:
    for record in txt_records(name, server):
        if record.replace(" ", "").startswith("v=DKIM1"):
            return record
    return None


def has_mail_host(domain: str, server: str = "") -> bool:
    """Whether mail for ``domain`` can be delivered: an MX record, or else an address
    record (RFC 5321's implicit MX)."""
    import dns.exception
    import dns.resolver

    resolver = _resolver(server)
    for kind in ("MX", "A", "AAAA"):
        try:
            if resolver.resolve(domain, kind):
                return True
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            where = server or "the system's resolver"
            raise ComposerError(f"DNS: cannot look up {domain} {kind} at {where}: {exc}") from None
    return False


def _resolver(server: str) -> dns.resolver.Resolver:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=not server)
    if server:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver.nameservers = [host or server]
        if port:
            resolver.port = int(port)
    resolver.lifetime = TIMEOUT
    return resolver
