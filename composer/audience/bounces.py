"""Bounces in mail stores: read from Maildir folders, mbox files and ``.eml``
files, and matched to a subscriber and an issue.

Matching, most certain first:
1. The VERP address the bounce came back to (``bounces+<token>@...``, see
   ``NEWSLETTER_BOUNCE_ADDRESS``): its signed token names the subscriber and
   the issue, whatever the report says.
2. Our Message-ID in the returned message (``<YYYY-MM-DD.hash@domain>``): the
   issue; the subscriber by the reported recipient.
3. The reported recipient alone: the subscriber with that address.

``scan`` only reads: nothing is moved, flagged or written. ``process``
applies them (see ``Store.record_bounce``) and moves each message away.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mailbox
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

from composer.audience.imap import messages as imap_messages
from composer.audience.imap import parse_source
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


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


class Matcher:
    """Finds the subscriber and issue of a bounce, reading the database only."""

    def __init__(self, settings: Settings) -> None:
        self.keys = settings.verify_keys
        known = Store.exists(settings.database)
        self.store = Store(settings.database, create=False) if known else None

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
            for name, raw, _ in messages(path):
                found = read_bounce(raw)
                first = found[0] if found else Bounce("", "unknown", "", "not a bounce")
                subscriber, sid, issue = matcher.match(first)
                others = tuple(b.recipient for b in found[1:] if b.recipient != first.recipient)
                yield Found(name, first, others, subscriber, sid, issue)
    finally:
        matcher.close()


# --- processing: apply what came back, then move it out of the way ----------


@dataclass
class Processed:
    """What one ``bounces process`` run did."""

    messages: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)  # subscribers now bounced, ...
    moved_to: set[str] = field(default_factory=set)


def _when(raw: bytes) -> str:
    """When the bounce was written (its Date), else now: soft bounces count by it."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = re.search(rb"^Date:[ \t]*(.+)$", head, re.I | re.M)
    if found:
        try:
            when = parsedate_to_datetime(found.group(1).decode("ascii", "replace").strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.astimezone(dt.UTC).isoformat(timespec="seconds")
        except (TypeError, ValueError):
            pass
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


Message = tuple[str, bytes, Callable[[], str]]  # name, raw, move it out of the way


def messages(path: Path, consume: bool = False) -> Iterator[Message]:
    """Every message under ``path``: a Maildir (cur/ and new/), an mbox file, an
    ``.eml`` file, or a folder of any of them, as (name, raw message, move).

    ``move`` puts a processed message out of the way: into the Maildir's
    ``.Processed`` folder, ``processed/`` beside an ``.eml`` file, or the mbox
    ``NAME.processed``. Without ``consume`` (``scan``) nothing is locked or
    created, and ``move`` is not to be called."""
    if not path.exists():
        raise ComposerError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        yield from _maildir(path)
    elif path.is_dir():
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") or child.name == "processed":
                continue
            if child.is_dir() or child.suffix.lower() in (".eml", ".mbox", ".msg", ""):
                yield from messages(child, consume)
    elif _is_mbox(path):
        yield from _mbox(path, consume)
    else:
        if path.stat().st_size > MAX_MESSAGE_BYTES:
            raise ComposerError(f"{path}: over 10 MB; not a bounce")

        def move() -> str:
            done = path.parent / "processed"
            done.mkdir(exist_ok=True)
            os.replace(path, done / path.name)
            return str(done)

        yield str(path), path.read_bytes(), move


def _maildir(folder: Path) -> Iterator[Message]:
    done = folder / ".Processed"
    for sub in ("new", "cur"):
        for path in sorted((folder / sub).iterdir()):
            if path.name.startswith("."):
                continue
            info = "" if ":2," in path.name else ":2,S"  # seen

            def move(path: Path = path, info: str = info) -> str:
                for part in ("cur", "new", "tmp"):
                    (done / part).mkdir(parents=True, exist_ok=True)
                os.replace(path, done / "cur" / (path.name + info))
                return str(done)

            yield str(path), path.read_bytes(), move


def _mbox(path: Path, consume: bool) -> Iterator[Message]:
    """An mbox's messages; when consuming, locked throughout, and those moved are
    copied to ``NAME.processed`` and removed from it at the end."""
    box = mailbox.mbox(str(path), create=False)
    moved: list[str] = []
    if consume:
        box.lock()
    try:
        for key in list(box.iterkeys()):

            def move(key: str = key) -> str:
                done = mailbox.mbox(str(path) + ".processed", create=True)
                done.lock()
                try:
                    done.add(box.get_message(key))
                    done.flush()
                finally:
                    done.unlock()
                    done.close()
                moved.append(key)
                return str(path) + ".processed"

            yield f"{path}#{key}", box.get_bytes(key), move
        for key in moved:
            box.remove(key)
        if moved:
            box.flush()
    finally:
        if consume:
            box.unlock()
        box.close()


def process(
    settings: Settings,
    source: str | Path,
    report: Callable[[str, Bounce, str | None], None] | None = None,
) -> Processed:
    """Apply every bounce waiting in ``source`` to the subscribers, once, then move
    each message out of the way. Safe to stop at any point: a message applied but
    not yet moved is applied again as nothing (each is recorded by its content)."""
    result = Processed()
    matcher = Matcher(settings)
    store = Store(settings.database, wait=settings.db_wait)
    try:
        imap = parse_source(str(source))
        pending = imap_messages(imap, settings) if imap else messages(Path(source), True)
        for name, raw, move in pending:
            fingerprint = hashlib.sha256(raw).hexdigest()[:32]
            when = _when(raw)
            for bounce in read_bounce(raw) or [Bounce("", "unknown", "", "not a bounce")]:
                _, sid, issue = matcher.match(bounce)
                changed = store.record_bounce(
                    fingerprint,
                    bounce.recipient,
                    sid,
                    issue,
                    bounce.kind,
                    bounce.status,
                    bounce.diagnostic,
                    when,
                    settings.soft_bounces,
                    settings.soft_bounce_days,
                )
                result.kinds[bounce.kind] += 1
                if changed:
                    result.changed[changed] += 1
                if report is not None:
                    report(name, bounce, changed)
            result.moved_to.add(move())
            result.messages += 1
    finally:
        store.close()
        matcher.close()
    return result
