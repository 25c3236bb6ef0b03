"""`newsletter doctor`: each check says ok or what to fix, against a real DNS
server (dnsmasq) on loopback and the real `newsletter serve` behind https."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.dns_server import Start
from tests.helpers import run
from tests.servers import newsletter_server, tls_front
from tests.smtp_server import tls_context, write_ca

DOMAIN = "weekly-update.net"


def _lines(output: str) -> dict[str, list[str]]:
    """check name -> its lines ("ok", "FIX" or "-" first)."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        mark, rest = line[:3].strip(), line[5:]  # "ok ", "FIX" or " - ", two spaces
        name, _, detail = rest.partition(": ")
        out.setdefault(name, []).append(f"{mark.strip()} {detail}")
    return out


def test_offline_on_a_fresh_newsletter(newsletter_home: Path) -> None:
    result = run("doctor", "--offline")
    assert result.exit_code == 1
    checks = _lines(result.stdout)
    assert all(line.startswith("FIX") for line in checks["settings"])
    assert any(
        "NEWSLETTER_BASE_URL=http://127.0.0.1:8000 is not https" in line
        for line in checks["settings"]
    )
    assert any("example.org is reserved" in line for line in checks["settings"])
    assert checks["DKIM keys"][0].startswith("FIX none: make one with newsletter dkim keygen")
    assert checks["latest issue"][0].startswith("ok 2025-04-16.yaml")
    assert checks["DNS and https"] == ["- not checked (--offline)"]


@pytest.fixture
def ready(
    newsletter_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[dict[str, str], int]]:
    """A newsletter set up right, served over https; returns the DNS records it
    needs (name -> TXT) and the https port."""
    monkeypatch.setenv("NEWSLETTER_FROM", f"news@{DOMAIN}")
    monkeypatch.setenv("SMTP_HOST", "smtp.relay-mail.com")
    keygen = run("dkim", "keygen", "--selector", "s1")
    assert keygen.exit_code == 0, keygen.output
    record = "".join(keygen.stdout.split("IN TXT ")[1].splitlines()[0].split('"')[1::2])
    monkeypatch.setenv("DKIM_SELECTOR", "s1")
    monkeypatch.setenv("DKIM_PRIVATE_KEY", "dkim/s1.rsa.pem")
    ca = trustme.CA()
    monkeypatch.setenv("SSL_CERT_FILE", str(write_ca(ca, tmp_path)))
    with (
        newsletter_server(newsletter_home, "serve") as plain,
        tls_front(plain, tls_context(ca.issue_cert("127.0.0.1"))) as port,
    ):
        monkeypatch.setenv("NEWSLETTER_BASE_URL", f"https://127.0.0.1:{port}")
        monkeypatch.setenv("NEWSLETTER_ALLOW_TEST_SETUP", "1")  # the loopback address
        yield (
            {
                f"s1._domainkey.{DOMAIN}": record,
                DOMAIN: "v=spf1 include:_spf.relay-mail.com -all",
                f"_dmarc.{DOMAIN}": f"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}",
            },
            port,
        )


def test_everything_ready(
    monkeypatch: pytest.MonkeyPatch, ready: tuple[dict[str, str], int], dns_server: Start
) -> None:
    records, _ = ready
    port = dns_server(txt=records, mx={DOMAIN: f"mx.{DOMAIN}"}, zones=[DOMAIN])
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", f"127.0.0.1:{port}")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    checks = _lines(result.stdout)
    for name in (
        "settings",
        "latest issue",
        "DKIM keys",
        "DKIM record",
        "SPF",
        "DMARC",
        "unsubscribe mailbox",
        "one-click",
    ):
        assert checks[name][0].startswith("ok "), (name, result.stdout)
    assert "answers the one-click POST over https" in checks["one-click"][0]


def test_each_missing_or_wrong_record_says_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, ready: tuple[dict[str, str], int], dns_server: Start
) -> None:
    records, _ = ready
    wrong = {
        # Another key published under our selector; an SPF record that does not
        # name the relay; a DMARC record without a policy; no MX for the mailbox.
        f"s1._domainkey.{DOMAIN}": "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        DOMAIN: "v=spf1 -all",
        f"_dmarc.{DOMAIN}": "v=DMARC1; rua=mailto:x@weekly-update.net",
    }
    port = dns_server(txt=wrong, zones=[DOMAIN])
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", f"127.0.0.1:{port}")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://127.0.0.1:9")  # nobody there
    result = run("doctor")
    assert result.exit_code == 1
    checks = _lines(result.stdout)
    assert "publishes another key" in checks["DKIM record"][0]
    assert "authorises no sender; add your relay's include:" in checks["SPF"][0]
    assert "no p= policy; add p=none at least" in checks["DMARC"][0]
    assert "its domain takes no mail" in checks["unsubscribe mailbox"][0]
    assert "does not answer over https" in checks["one-click"][0]
    assert all(
        checks[name][0].startswith("FIX")
        for name in ("DKIM record", "SPF", "DMARC", "unsubscribe mailbox", "one-click")
    )

    # And with nothing published at all.
    empty = dns_server(zones=[DOMAIN])
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", f"127.0.0.1:{empty}")
    bare = _lines(run("doctor").stdout)
    assert "no record at s1._domainkey.weekly-update.net" in bare["DKIM record"][0]
    assert "no SPF record at weekly-update.net" in bare["SPF"][0]
    assert "no DMARC record at _dmarc.weekly-update.net" in bare["DMARC"][0]


def test_spf_that_lets_anyone_send_or_may_miss_the_relay(
    monkeypatch: pytest.MonkeyPatch, ready: tuple[dict[str, str], int], dns_server: Start
) -> None:
    records, _ = ready
    for spf, mark, says in (
        ("v=spf1 include:_spf.relay-mail.com +all", "FIX", "+all lets anyone send"),
        # The relay's sending networks are often named otherwise (SES: amazonses.com):
        # advice, not a fix.
        ("v=spf1 include:amazonses.com -all", "ok", "make sure it includes smtp.relay-mail.com"),
    ):
        port = dns_server(txt={**records, DOMAIN: spf}, zones=[DOMAIN])
        monkeypatch.setenv("NEWSLETTER_DNS_SERVER", f"127.0.0.1:{port}")
        line = _lines(run("doctor").stdout)["SPF"][0]
        assert line.startswith(mark) and says in line, line
