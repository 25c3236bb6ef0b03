"""Bounces in mail stores: read from Maildir folders, mbox files and ``.eml``
files, and matched to a subscriber and an issue.

Matching, most certain first:
1. The VERP address the bounce came back to (``bounces+<token>@...``, see
   ``NEWSLETTER_BOUNCE_ADDRESS``): its signed token names the subscriber and
   the issue, whatever the report says.
2. Our Message-ID in the returned message (``<YYYY-MM-DD.hash@domain>``): the
   issue; the subscriber by the reported recipient.
3. The reported recipient alone: the subscriber with that address.

``scan`` only reads: nothing is moved, flagged or written.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from composer.audience.tokens import verify_verp
from composer.config import Settings
from composer.errors import ComposerError
from composer.mail.bounces import Bounce, read_bounce
from composer.store.database import Store

_OUR_MESSAGE_ID = re.compile(r"<(\d{4}-\d{2}-\d{2})\.[0-9a-f]{24}@[^>]+>")
MAX_MESSAGE_BYTES = 10_000_000


@dataclass(frozen=True)
class Found:
    """One returned message: where it is, what it says, whom it is about."""

    file: str  # its path (a Maildir or mbox message: the store's path and its key)
    bounce: Bounce
    others: tuple[str, ...]  # further recipients the same report names
    subscriber: str  # the subscriber's address, when matched
    subscriber_id: int | None
    issue: str  # the issue's date, when known

    def as_dict(self) -> dict[str, object]:
        b = self.bounce
        return {
            "file": self.file,
            "recipient": b.recipient,
            "kind": b.kind,
            "status": b.status,
            "diagnostic": b.diagnostic,
            "subscriber": self.subscriber or None,
            "subscriber_id": self.subscriber_id,
            "issue": self.issue or None,
            "other_recipients": list(self.others),
        }


def messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw message) of every message under ``path``: a Maildir (cur/ and
    new/), an mbox file, an ``.eml`` file, or a folder of any of them."""
    if not path.exists():
        raise ComposerError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        maildir = mailbox.Maildir(str(path), factory=None, create=False)
        for key in sorted(maildir.keys()):
            yield f"{path}/{key}", maildir.get_bytes(key)
    elif path.is_dir():
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir() or child.suffix.lower() in (".eml", ".mbox", ".msg", ""):
                yield from messages(child)
    elif _is_mbox(path):
        mbox = mailbox.mbox(str(path), create=False)
        for key in list(mbox.iterkeys()):
            yield f"{path}#{key}", mbox.get_bytes(key)
    else:
        if path.stat().st_size > MAX_MESSAGE_BYTES:
            raise ComposerError(f"{path}: over 10 MB; not a bounce")
        yield str(path), path.read_bytes()


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


class Matcher:
    """Finds the subscriber and issue of a bounce, reading the database only."""

    def __init__(self, settings: Settings) -> None:
        self.keys = settings.verify_keys
        self.store = Store(settings.db_path, create=False) if settings.db_path.exists() else None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def match(self, bounce: Bounce) -> tuple[str, int | None, str]:
        claim = verify_verp(self.keys, bounce.returned_to) if bounce.returned_to else None
        issue = claim.issue if claim else ""
        if not issue and (found := _OUR_MESSAGE_ID.match(bounce.message_id)):
            issue = found.group(1)
        if self.store is None:
            return "", claim.subscriber_id if claim else None, issue
        subscriber = (
            self.store.subscriber_by_id(claim.subscriber_id)
            if claim
            else self.store.subscriber(bounce.recipient)
            if bounce.recipient
            else None
        )
        if subscriber is None:
            return "", claim.subscriber_id if claim else None, issue
        return subscriber.email, subscriber.id, issue


def scan(settings: Settings, paths: list[Path]) -> Iterator[Found]:
    """Every message under ``paths``, read and matched; nothing is changed."""
    matcher = Matcher(settings)
    try:
        for path in paths:
            for name, raw in messages(path):
                found = read_bounce(raw)
                first = found[0] if found else Bounce("", "unknown", "", "not a bounce")
                subscriber, sid, issue = matcher.match(first)
                others = tuple(b.recipient for b in found[1:] if b.recipient != first.recipient)
                yield Found(name, first, others, subscriber, sid, issue)
    finally:
        matcher.close()
