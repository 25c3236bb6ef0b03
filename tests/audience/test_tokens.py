"""Tokens already in subscribers' mailboxes must keep verifying: each kind is
checked against HMAC-SHA256 written out here, not through our helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from composer.audience.tokens import sign, verify, verify_verp, verp_address, verp_token

pytestmark = pytest.mark.no_database

KEY = "k3y-with-ünïcode"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_unsubscribe_tokens_are_the_hmac_of_their_payload() -> None:
    for sid, name in ((1, "weekly"), (123456789, "list with spaces"), (7, "")):
        payload = f"{sid}:{name}".encode()
        mac = hmac.new(KEY.encode(), b"unsubscribe\x00" + payload, hashlib.sha256).digest()
        expected = f"{_b64(payload)}.{_b64(mac[:16])}"
        assert sign(KEY, sid, name) == expected
        claim = verify(["other key", KEY], expected)
        assert claim is not None and (claim.subscriber_id, claim.list_name) == (sid, name)
    assert verify("other key", sign(KEY, 1, "weekly")) is None


def test_verp_tokens_are_the_hmac_of_their_payload() -> None:
    payload = (42).to_bytes(5, "big") + (9237).to_bytes(2, "big")  # 2025-04-16
    mac = hmac.new(KEY.encode(), b"verp\x00" + payload, hashlib.sha256).digest()[:8]
    expected = base64.b32encode(payload + mac).decode().rstrip("=").lower()
    assert verp_token(KEY, 42, "2025-04-16") == expected
    claim = verify_verp(KEY, verp_address("bounces@news.example.org", expected))
    assert claim is not None and (claim.subscriber_id, claim.issue) == (42, "2025-04-16")
    assert verify_verp("other key", verp_address("bounces@x.org", expected)) is None
