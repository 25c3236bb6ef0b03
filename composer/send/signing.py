"""DKIM as the newsletter configures it: the signer for its messages, new keys
(``newsletter dkim keygen``) and checking a message (``newsletter dkim check``).

Keys live in the newsletter's ``dkim/`` folder (mode 0700, files 0600) unless
the settings name other files; a key file others can read is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from composer.config import DKIM_SELECTOR_RE, Settings
from composer.errors import ComposerError, ConfigError
from composer.fsutil import relative
from composer.mail import dkim


def dkim_signer(settings: Settings) -> dkim.Signer | None:
    """The DKIM signer the settings ask for (keys read and checked now), if any."""
    pairs = [
        (pair, name)
        for pair, name in (
            (settings.dkim_rsa, "DKIM_PRIVATE_KEY"),
            (settings.dkim_ed25519, "DKIM_ED25519_PRIVATE_KEY"),
        )
        if pair is not None
    ]
    if not pairs:
        return None
    domain = settings.dkim_domain or settings.mail_domain
    keys = [dkim.load_key(path, selector, domain, name) for (selector, path), name in pairs]
    return dkim.Signer(sorted(keys, key=lambda k: k.algorithm != "rsa-sha256"))


@dataclass(frozen=True)
class KeyMade:
    path: Path
    record_name: str
    record: str
    settings: list[str]  # the .env lines that use it


def make_key(settings: Settings, selector: str, kind: str) -> KeyMade:
    """A new key in ``dkim/<selector>.<kind>.pem`` (never over an existing one)."""
    if not DKIM_SELECTOR_RE.fullmatch(selector):
        raise ConfigError(f"selector {selector!r} is not a DNS label such as 'news2026'")
    folder = settings.home / "dkim"
    path = folder / f"{selector}.{kind}.pem"
    pem, record = dkim.new_key(kind)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{relative(path)} exists; choose another selector (keys are rotated by "
            "publishing a new selector, never by overwriting a key in use)"
        ) from None
    except OSError as exc:
        raise ComposerError(f"{relative(path)}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    domain = settings.dkim_domain or settings.mail_domain
    prefix = "DKIM_ED25519" if kind == "ed25519" else "DKIM"
    return KeyMade(
        path=path,
        record_name=f"{selector}._domainkey.{domain}",
        record=record,
        settings=[f"{prefix}_SELECTOR={selector}", f"{prefix}_PRIVATE_KEY={relative(path)}"],
    )


def check_message(
    settings: Settings, path: Path, records: dict[str, str], offline: bool
) -> list[dkim.Verdict]:
    """The verdicts on a message's signatures: against ``records`` (selector ->
    TXT record) where given, else against DNS (unless ``offline``)."""
    try:
        message = path.read_bytes()
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None

    def lookup(selector: str, domain: str) -> str | None:
        if selector in records:
            return records[selector]
        if offline:
            return None
        from composer.mail.dns import dkim_record

        return dkim_record(f"{selector}._domainkey.{domain}", settings.dns_server)

    verdicts = dkim.verify(message, lookup)
    if not verdicts:
        raise ComposerError(
            f"{path}: no DKIM-Signature; set DKIM_SELECTOR and DKIM_PRIVATE_KEY "
            "(newsletter dkim keygen makes a key), then build or send again"
        )
    return verdicts
