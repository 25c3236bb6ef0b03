"""DKIM: every message that reaches a real SMTP server verifies with dkimpy (an
independent verifier) against the published keys, covers both unsubscribe
headers, and stops verifying when a signed part is altered."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dkim
import pytest

from tests.dns_server import Start
from tests.helpers import run, write_issue
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, running


def _keygen(monkeypatch: pytest.MonkeyPatch, kind: str, selector: str) -> str:
    """newsletter dkim keygen, its settings applied; returns the DNS record."""
    result = run("dkim", "keygen", "--selector", selector, "--type", kind)
    assert result.exit_code == 0, result.output
    record = re.search(r"IN TXT (.*)$", result.stdout, re.M)
    assert record is not None, result.stdout
    for line in result.stdout.splitlines():
        if line.strip().startswith("DKIM_"):
            name, value = line.strip().split("=", 1)
            monkeypatch.setenv(name, value)
    return "".join(re.findall(r'"([^"]*)"', record.group(1)))


@pytest.fixture
def keys(newsletter_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[bytes, bytes]:
    """An RSA and an Ed25519 key, configured; their records by DNS name."""
    monkeypatch.setenv("NEWSLETTER_FROM", "Weekly Update <news@example.org>")
    return {
        f"{selector}._domainkey.example.org.".encode(): _keygen(
            monkeypatch, kind, selector
        ).encode()
        for kind, selector in (("rsa", "r1"), ("ed25519", "e1"))
    }


def _verifies(message: bytes, records: dict[bytes, bytes]) -> list[bool]:
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name if name.endswith(b".") else name + b".")

    def one(i: int) -> bool:
        try:
            return bool(dkim.DKIM(message).verify(idx=i, dnsfunc=dns))
        except dkim.ValidationError:  # dkimpy raises for some failures
            return False

    return [one(0), one(1)]


@pytest.mark.parametrize("eight_bit", [True, False], ids=["8bit", "7bit"])
def test_every_message_sent_verifies_and_covers_both_unsubscribe_headers(
    monkeypatch: pytest.MonkeyPatch,
    newsletter_home: Path,
    keys: dict[bytes, bytes],
    eight_bit: bool,
) -> None:
    write_issue(
        newsletter_home,
        "2025-04-23.yaml",
        [
            ("title: Weekly Update", "title: Mise à jour ✓"),
            ("date: 2025-04-16", "date: 2025-04-23"),
            ("subject: Clearview AI", "subject: « Clearview » AI — ünïcode"),
        ],
    )
    addresses = add_subscribers(3)
    assert run("subscribers", "add", "zoe@example.org", "--name", "Zoë Ñúñez").exit_code == 0
    handler = Handler(eight_bit=eight_bit)
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-23", "--yes")
        test_copy = run("send", "2025-04-16", "--test", "editor@example.org")
    assert result.exit_code == 0, result.output
    assert test_copy.exit_code == 0, test_copy.output
    assert len(handler.received) == len(addresses) + 2
    for received in handler.received:
        message = received.content
        assert _verifies(message, keys) == [True, True], received.rcpt_tos
        signatures = [v for k, v in received.message().items() if k == "DKIM-Signature"]
        assert [re.search(r"a=([\w-]+)", s).group(1) for s in signatures] == [  # type: ignore[union-attr]
            "rsa-sha256",
            "ed25519-sha256",
        ]
        for s in signatures:
            h = re.search(r"h=([^;]+);", s).group(1).replace("\r\n", "").replace(" ", "")  # type: ignore[union-attr]
            # From and both unsubscribe headers over-signed: none can be added.
            for name in ("from", "list-unsubscribe", "list-unsubscribe-post"):
                assert h.split(":").count(name) == 2
            assert "d=example.org" in s
        # Altering any signed part breaks both signatures.
        for old, new in (
            (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"),
            (b"\r\nSubject: ", b"\r\nSubject: Re: "),
            (b"<https://", b"<https://evil."),
            (b"</body>", b"<p>added</p></body>"),
        ):
            altered = message.replace(old, new, 1)
            assert altered != message, old
            assert _verifies(altered, keys) == [False, False], old
        # A relay adding a second List-Unsubscribe header breaks them too.
        assert _verifies(b"List-Unsubscribe: <https://x.example/>\r\n" + message, keys) == [
            False,
            False,
        ]


def test_a_key_others_can_read_is_refused_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path, keys: dict[bytes, bytes]
) -> None:
    add_subscribers(2)
    key = Path(os.environ["DKIM_PRIVATE_KEY"])
    os.chmod(newsletter_home / key, 0o644)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert f"DKIM_PRIVATE_KEY={newsletter_home / key}: the private key is readable by others" in (
        result.stderr
    )
    assert "chmod 600" in result.stderr
    assert handler.received == []


def test_keygen_never_overwrites_and_keys_are_private(
    newsletter_home: Path, keys: dict[bytes, bytes]
) -> None:
    key = newsletter_home / "dkim" / "r1.rsa.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (newsletter_home / "dkim").stat().st_mode & 0o777 == 0o700
    before = key.read_bytes()
    again = run("dkim", "keygen", "--selector", "r1")
    assert again.exit_code == 1
    assert "exists; choose another selector" in again.stderr
    assert key.read_bytes() == before
    assert run("dkim", "keygen", "--selector", "bad_selector!").exit_code == 1


def test_dkim_check_a_built_message_against_given_records(
    newsletter_home: Path, keys: dict[bytes, bytes]
) -> None:
    assert run("build", "2025-04-16").exit_code == 0
    eml = "build/2025-04-16/email.eml"
    records = [f"--record={k.decode().split('.')[0]}={v.decode()}" for k, v in keys.items()]
    good = run("dkim", "check", eml, *records)
    assert good.exit_code == 0, good.output
    assert good.stdout.count("valid; covers both List-Unsubscribe headers") == 2
    offline = run("dkim", "check", eml, "--offline")
    assert offline.exit_code == 1
    assert "no DKIM record at r1._domainkey.example.org" in offline.stdout
    path = newsletter_home / eml
    path.write_bytes(path.read_bytes().replace(b"Subject: ", b"Subject: Fwd: ", 1))
    bad = run("dkim", "check", eml, *records)
    assert bad.exit_code == 1
    assert "a signed header was changed" in bad.stdout


def test_dkim_check_against_published_records(
    monkeypatch: pytest.MonkeyPatch,
    newsletter_home: Path,
    keys: dict[bytes, bytes],
    dns_server: Start,
) -> None:
    port = dns_server(txt={k.decode(): v.decode() for k, v in keys.items()}, zones=["example.org"])
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", f"127.0.0.1:{port}")
    assert run("build", "2025-04-16").exit_code == 0
    result = run("dkim", "check", "build/2025-04-16/email.eml")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("valid; covers both") == 2
    # A signature whose selector was never published has no record.
    monkeypatch.setenv("DKIM_SELECTOR", "unpublished")
    assert run("build", "2025-04-16").exit_code == 0
    missing = run("dkim", "check", "build/2025-04-16/email.eml")
    assert missing.exit_code == 0, missing.output  # the Ed25519 one is still valid
    assert "no DKIM record at unpublished._domainkey.example.org" in missing.stdout
