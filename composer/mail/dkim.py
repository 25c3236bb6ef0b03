"""DKIM signatures (RFC 6376; Ed25519: RFC 8463), made per message at send time.

Receivers offer one-click unsubscribe only when a valid DKIM signature covers
both ``List-Unsubscribe`` headers (RFC 8058 section 4), and a relay signing with
a default header list leaves ``List-Unsubscribe-Post`` out. So we sign
ourselves: relaxed/relaxed, with From and the two unsubscribe headers
over-signed (listed once more than they occur) so that nobody on the way can add
a second one.

Cost: the message's body differs per subscriber (the unsubscribe links), so its
hash is made per message, over chunks that were canonicalised once per issue
(only the per-subscriber values are canonicalised per message); the signature
itself is the ``cryptography`` package's (RSA-2048 about 0.25 ms here; dkimpy's
pure-Python RSA takes about 20 ms).

The only module that imports ``cryptography``, and only when a key is used
(commands that sign nothing do not pay for its import).
"""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# What we sign, in this order (Reply-To even when absent, so none can be added);
# From and the two unsubscribe headers once more than they occur.
SIGNED = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
)
OVERSIGNED = ("from", "list-unsubscribe", "list-unsubscribe-post")
H_TAG = ":".join(SIGNED + OVERSIGNED)

_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")


def canonical_body_chunk(chunk: bytes) -> bytes:
    """Relaxed body canonicalisation (RFC 6376 3.4.4) of a chunk that neither ends
    in whitespace nor splits a line's trailing whitespace from its CRLF (true of
    our quoted-printable chunks: QP encodes a line's last space as ``=20``)."""
    if b" " not in chunk and b"\t" not in chunk:
        return chunk
    return _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", chunk))


def canonical_header(name: str, value: str) -> bytes:
    """Relaxed header canonicalisation (RFC 6376 3.4.2) of one field."""
    unfolded = value.replace("\r\n", "")
    return f"{name.lower()}:{' '.join(unfolded.split())}\r\n".encode()


def parse_headers(block: bytes) -> dict[str, str]:
    """Our own header block (one instance of each field) as lower-cased name ->
    raw value (folding kept)."""
    fields: dict[str, str] = {}
    name = ""
    for line in block.decode("ascii").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and name:
            fields[name] += "\r\n" + line
            continue
        raw_name, _, value = line.partition(":")
        name = raw_name.strip().lower()
        fields[name] = value
    return fields


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    key: PrivateKey

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463: Ed25519 signs the SHA-256 hash of the data, not the data.
        return self.key.sign(hashlib.sha256(data).digest())


def load_key(path: Path, selector: str, domain: str, setting: str) -> DkimKey:
    """A private key from a PEM file that only its owner can read."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}={path}: cannot read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{setting}={path}: the private key is readable by others; "
            f"run chmod 600 {path} (and make a new key if others may have copied it)"
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{setting}={path}: not an unencrypted PEM private key ({exc}); "
            "make one with newsletter dkim keygen"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise ConfigError(f"{setting}={path}: a {key.key_size}-bit RSA key; use 2048 bits")
        return DkimKey(selector, domain, "rsa-sha256", key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DkimKey(selector, domain, "ed25519-sha256", key)
    raise ConfigError(f"{setting}={path}: DKIM keys are RSA or Ed25519; this is neither")


def dns_record(key: PrivateKey) -> str:
    """The TXT record that publishes ``key``'s public half."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def new_key(kind: str) -> tuple[bytes, str]:
    """A new private key as PEM, and its DNS record."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key: PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, dns_record(key)


class Signer:
    """Signs messages with one or more keys (RSA first, then Ed25519)."""

    def __init__(self, keys: list[DkimKey]) -> None:
        self.keys = keys

    def headers(self, header_block: bytes, body: list[bytes], now: int | None = None) -> bytes:
        """The DKIM-Signature fields for a message whose header block is
        ``header_block`` and whose body, relaxed-canonicalised, is ``body`` (chunks;
        the caller makes sure the last one does not end in empty lines)."""
        digest = hashlib.sha256()
        for chunk in body:
            digest.update(chunk)
        bh = base64.b64encode(digest.digest()).decode()
        fields = parse_headers(header_block)
        signed = b"".join(canonical_header(name, fields[name]) for name in SIGNED if name in fields)
        stamp = int(time.time()) if now is None else now
        out = []
        for key in self.keys:
            value = (
                f" v=1; a={key.algorithm}; c=relaxed/relaxed; d={key.domain};\r\n"
                f"\ts={key.selector}; t={stamp}; h={H_TAG};\r\n"
                f"\tbh={bh};\r\n\tb="
            )
            data = signed + canonical_header("dkim-signature", value).rstrip(b"\r\n")
            signature = base64.b64encode(key.sign(data)).decode()
            folded = "\r\n\t".join(signature[i : i + 72] for i in range(0, len(signature), 72))
            out.append(f"DKIM-Signature:{value}{folded}\r\n".encode("ascii"))
        return b"".join(out)


# -- checking a message (``newsletter dkim check``) ----------------------------------


@dataclass(frozen=True)
class Verdict:
    domain: str
    selector: str
    algorithm: str
    valid: bool
    reason: str  # why not, or "valid"
    covers_unsubscribe: bool  # both List-Unsubscribe headers are signed (RFC 8058)


RecordLookup = Callable[[str, str], str | None]  # (selector, domain) -> TXT record


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip()] = "".join(value.split())
    return tags


def _fields(head: bytes) -> list[tuple[str, str]]:
    """Header fields in order: (name as written, raw value with folding)."""
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
        elif line:
            name, _, value = line.partition(":")
            fields.append((name, value))
    return fields


def canonical_body(body: bytes) -> bytes:
    """A whole body relaxed-canonicalised (RFC 6376 3.4.4)."""
    return _canonical_body(body, "relaxed")


def _canonical_body(body: bytes, method: str) -> bytes:
    if method == "relaxed":
        body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
        body = re.sub(rb"[ \t]+$", b"", body)
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if method == "relaxed" and body == b"\r\n":
        return b""
    if method == "simple" and not body:
        return b"\r\n"
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def _canonical_field(name: str, value: str, method: str) -> bytes:
    if method == "relaxed":
        return canonical_header(name.strip(), value)
    return f"{name}:{value}\r\n".encode()


def verify(message: bytes, lookup: RecordLookup) -> list[Verdict]:
    """Check every DKIM signature of ``message`` against the records ``lookup``
    gives. Supports what signers use: rsa-sha256, ed25519-sha256, simple or
    relaxed canonicalisation; refuses ``l=`` (a partly signed body)."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _, body = message.partition(b"\r\n\r\n")
    fields = _fields(head + b"\r\n")
    verdicts = []
    for index, (name, value) in enumerate(fields):
        if name.strip().lower() == "dkim-signature":
            verdicts.append(_verify_one(fields, index, value, body, lookup))
    return verdicts


def _verify_one(
    fields: list[tuple[str, str]], index: int, raw: str, body: bytes, lookup: RecordLookup
) -> Verdict:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

    tags = _tags(raw)
    domain, selector, algorithm = tags.get("d", ""), tags.get("s", ""), tags.get("a", "")
    signed = [h.strip().lower() for h in tags.get("h", "").split(":") if h.strip()]
    covers = "list-unsubscribe" in signed and "list-unsubscribe-post" in signed

    def verdict(ok: bool, reason: str) -> Verdict:
        return Verdict(domain, selector, algorithm, ok, reason, covers)

    if tags.get("v") != "1" or algorithm not in ("rsa-sha256", "ed25519-sha256"):
        return verdict(False, f"unsupported signature (v={tags.get('v')}, a={algorithm})")
    if "l" in tags:
        return verdict(False, "signs only part of the body (l=)")
    header_c, _, body_c = tags.get("c", "simple/simple").partition("/")
    body_c = body_c or "simple"
    if "from" not in signed:
        return verdict(False, "From is not signed")
    bh = base64.b64encode(hashlib.sha256(_canonical_body(body, body_c)).digest()).decode()
    if bh != tags.get("bh"):
        return verdict(False, "the body hash does not match: the body was changed")
    # Header fields, each name's instances taken from the bottom up.
    data = b""
    taken: dict[str, int] = {}
    for name in signed:
        instances = [
            f for f in fields[:index] + fields[index + 1 :] if f[0].strip().lower() == name
        ]
        n = taken.get(name, 0)
        taken[name] = n + 1
        if n < len(instances):
            field_name, value = instances[len(instances) - 1 - n]
            data += _canonical_field(field_name, value, header_c)
    stripped = re.sub(r"(^|;)(\s*b\s*=)[^;]*", r"\1\2", raw, count=1)
    data += _canonical_field(fields[index][0], stripped, header_c).rstrip(b"\r\n")
    record = lookup(selector, domain)
    if record is None:
        return verdict(False, f"no DKIM record at {selector}._domainkey.{domain}")
    rtags = _tags(record)
    try:
        signature = base64.b64decode(tags.get("b", ""))
        key_bytes = base64.b64decode(rtags.get("p", ""))
    except ValueError:
        return verdict(False, "the signature or the record's key is not base64")
    if not key_bytes:
        return verdict(False, "the record's key is empty (revoked)")
    try:
        if algorithm == "rsa-sha256":
            public = serialization.load_der_public_key(key_bytes)
            if not isinstance(public, rsa.RSAPublicKey):
                return verdict(False, "the record's key is not an RSA key")
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            ed = ed25519.Ed25519PublicKey.from_public_bytes(key_bytes)
            ed.verify(signature, hashlib.sha256(data).digest())
    except InvalidSignature:
        return verdict(False, "the signature does not match: a signed header was changed")
    except (ValueError, UnsupportedAlgorithm) as exc:
        return verdict(False, f"the record's key cannot be read: {exc}")
    return verdict(True, "valid")
