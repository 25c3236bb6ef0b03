"""Signed unsubscribe tokens: who (subscriber id) and which list, nothing else.

``token = b64url(payload) "." b64url(HMAC-SHA256(key, payload)[:16])`` with
``payload = "<subscriber id>:<list>"``. RFC 8058 requires the URI alone to
identify the recipient and the list; the HMAC makes it impossible to
unsubscribe someone by knowing only their address, and verification compares
in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: bytes) -> bytes:
    mac = hmac.new(key.encode(), b"unsubscribe\x00" + payload, hashlib.sha256)
    return mac.digest()[:_MAC_BYTES]


def sign(key: str, subscriber_id: int, list_name: str) -> str:
    payload = f"{subscriber_id}:{list_name}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


@dataclass(frozen=True)
class TokenClaim:
    subscriber_id: int
    list_name: str


def verify(keys: str | list[str], token: str) -> TokenClaim | None:
    """The claim of a valid token; ``None`` for anything tampered, truncated, foreign
    or not in its canonical form (no padding, nothing a decoder would ignore).
    ``keys``: the current key first, then earlier ones still accepted after a rotation."""
    if len(token) > 512 or token.count(".") != 1:
        return None
    body, _, mac = token.partition(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        return None
    if _b64(payload) != body or _b64(given) != mac:
        return None  # "=" padding, or trailing bits a decoder drops: not one we made
    for key in [keys] if isinstance(keys, str) else keys:
        if hmac.compare_digest(given, _mac(key, payload)):
            break
    else:
        return None
    sid, sep, list_name = payload.decode("utf-8", "replace").partition(":")
    if not sep or not sid.isdigit():
        return None
    return TokenClaim(int(sid), list_name)
