"""A bounce mailbox over IMAP (TLS, certificate verified): what
``bounces process imaps://user@host[:port]/FOLDER`` reads.

The password comes from ``NEWSLETTER_IMAP_PASSWORD`` (never the URL, never
output); ``NEWSLETTER_IMAP_CA_FILE`` names a CA to trust besides the system's.
Each message is read without marking it seen (``BODY.PEEK[]``), applied, then
moved to the ``Processed`` folder (IMAP MOVE, RFC 6851, or copy, flag deleted
and expunge where the server has no MOVE).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from composer.config import Settings
from composer.errors import ComposerError

PROCESSED = "Processed"
TIMEOUT = 30.0


@dataclass(frozen=True)
class ImapSource:
    host: str
    port: int
    user: str
    folder: str

    @property
    def label(self) -> str:
        return f"imaps://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_source(url: str) -> ImapSource | None:
    """An ``imaps://`` source, or None for a path."""
    if not url.lower().startswith("imaps://"):
        if url.lower().startswith("imap://"):
            raise ComposerError(f"{url}: use imaps:// (IMAP over TLS); plain IMAP is refused")
        return None
    parts = urlsplit(url)
    if not parts.hostname or not parts.username:
        raise ComposerError(f"{url}: write imaps://USER@HOST[:PORT]/FOLDER")
    if parts.password:
        raise ComposerError(
            f"imaps://{parts.username}@{parts.hostname}: put the password in "
            "NEWSLETTER_IMAP_PASSWORD, not in the URL"
        )
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapSource(parts.hostname, parts.port or 993, unquote(parts.username), folder)


def _check(result: tuple[str, list[Any]], what: str, source: ImapSource) -> list[Any]:
    status, data = result
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ComposerError(f"{source.label}: {what} failed: {detail[:200]}")
    return data


def messages(
    source: ImapSource, settings: Settings
) -> Iterator[tuple[str, bytes, Callable[[], str]]]:
    """(name, raw message, move it to Processed) for every message in the folder."""
    password = settings.imap_password.get()
    if not password:
        raise ComposerError(f"{source.label}: set NEWSLETTER_IMAP_PASSWORD")
    try:
        context = ssl.create_default_context(cafile=settings.imap_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ComposerError(f"NEWSLETTER_IMAP_CA_FILE={settings.imap_ca_file}: {exc}") from None
    try:
        conn = imaplib.IMAP4_SSL(source.host, source.port, ssl_context=context, timeout=TIMEOUT)
    except ssl.SSLCertVerificationError as exc:
        raise ComposerError(
            f"{source.host}:{source.port}: its certificate is not trusted ({exc.verify_message}); "
            "set NEWSLETTER_IMAP_CA_FILE to the CA that signed it"
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ComposerError(f"{source.host}:{source.port}: cannot connect: {exc}") from None
    try:
        try:
            conn.login(source.user, password)
        except imaplib.IMAP4.error:
            raise ComposerError(
                f"{source.label}: the server refused the login; check the user and "
                "NEWSLETTER_IMAP_PASSWORD"
            ) from None
        _check(conn.select(_quote(source.folder)), f"opening {source.folder}", source)
        conn.create(_quote(PROCESSED))  # fails harmlessly when it exists
        listed = _check(conn.capability(), "asking its capabilities", source)
        can_move = b"MOVE" in b" ".join(c for c in listed if isinstance(c, bytes)).upper().split()
        data = _check(conn.uid("SEARCH", "UNDELETED"), "listing messages", source)
        found = (data[0] or b"").split() if data and isinstance(data[0], bytes) else []
        for uid in (u.decode("ascii") for u in found):
            fetched = _check(conn.uid("FETCH", uid, "(BODY.PEEK[])"), "reading a message", source)
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), b"")

            def move(uid: str = uid) -> str:
                if can_move:
                    _check(conn.uid("MOVE", uid, _quote(PROCESSED)), "moving", source)
                else:
                    _check(conn.uid("COPY", uid, _quote(PROCESSED)), "copying", source)
                    _check(conn.uid("STORE", uid, "+FLAGS", r"(\Deleted)"), "flagging", source)
                    conn.expunge()
                return f"{source.label.rsplit('/', 1)[0]}/{PROCESSED}"

            yield f"{source.label};UID={uid}", bytes(raw), move
    except (TimeoutError, OSError, imaplib.IMAP4.abort) as exc:
        raise ComposerError(f"{source.label}: connection lost: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()


def _quote(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
