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


def _pending(source: Path) -> Iterator[tuple[str, bytes, Callable[[], str]]]:
    """(name, raw message, move it away) for every message waiting in ``source``:
    a Maildir (processed ones go to its ``.Processed`` folder), a folder of
    ``.eml`` files or one file (to ``processed/`` beside them), or an mbox (to
    ``NAME.processed``, an mbox too)."""
    if source.is_dir() and (source / "cur").is_dir() and (source / "new").is_dir():
        done = source / ".Processed"
        for sub in ("cur", "new", "tmp"):
            (done / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("new", "cur"):
            for path in sorted((source / sub).iterdir()):
                if path.name.startswith("."):
                    continue
                info = "" if ":2," in path.name else ":2,S"

                def to_processed(path: Path = path, info: str = info) -> str:
                    os.replace(path, done / "cur" / (path.name + info))
                    return str(done)

                yield str(path), path.read_bytes(), to_processed
    elif source.is_file() and _is_mbox(source):
        yield from _pending_mbox(source)
    elif source.is_file() or source.is_dir():
        files = (
            [source]
            if source.is_file()
            else sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        )
        for path in files:
            done = path.parent / "processed"

            def move(path: Path = path, done: Path = done) -> str:
                done.mkdir(exist_ok=True)
                os.replace(path, done / path.name)
                return str(done)

            yield str(path), path.read_bytes(), move
    else:
        raise ComposerError(f"{source}: no such file or folder")


def _pending_mbox(source: Path) -> Iterator[tuple[str, bytes, Callable[[], str]]]:
    box = mailbox.mbox(str(source), create=False)
    done = mailbox.mbox(str(source) + ".processed", create=True)
    box.lock()
    try:
        keys = list(box.iterkeys())
        for key in keys:

            def keep(key: str = key) -> str:
                done.lock()
                try:
                    done.add(box.get_message(key))
                    done.flush()
                finally:
                    done.unlock()
                return str(source) + ".processed"

            yield f"{source}#{key}", box.get_bytes(key), keep
        for key in keys:
            box.remove(key)
        box.flush()
    finally:
        box.unlock()
        box.close()
        done.close()


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
    store = Store(settings.db_path, wait=settings.db_wait)
    try:
        imap = parse_source(str(source))
        pending = imap_messages(imap, settings) if imap else _pending(Path(source))
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
