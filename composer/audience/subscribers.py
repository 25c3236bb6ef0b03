"""Subscribers: CSV import and export, adding one, unsubscribe requests by mail.

Addresses follow the one address policy of ``mail.addresses``.

The import streams: rows are read, checked and written in transactions of a
few thousand, so memory does not grow with the file.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from composer.errors import SubscriberError
from composer.mail.addresses import normalise
from composer.mail.message import clean
from composer.store.database import STATUSES, Store, json_string, now_iso

BATCH = 2000
_EMAIL_COLUMNS = ("email", "email address", "e-mail", "e-mail address", "mail", "address")
_NAME_COLUMNS = ("name", "full name", "fullname", "display name")
_FIRST_COLUMNS = ("first name", "firstname", "fname", "given name")
_LAST_COLUMNS = ("last name", "lastname", "lname", "surname", "family name")
_LANGUAGE_COLUMNS = ("language", "lang", "locale")
_LIST_COLUMNS = ("lists", "list", "tags")
_STATUS_COLUMNS = ("status",)
# Mailchimp exports "cleaned" (bounced) and "unsubscribed" in separate files,
# and a status column in audience exports.
_STATUS_WORDS = {
    "subscribed": "active",
    "active": "active",
    "unsubscribed": "unsubscribed",
    "cleaned": "bounced",
    "bounced": "bounced",
    "complained": "complained",
}


def normalise_name(raw: str) -> str:
    return clean(unicodedata.normalize("NFC", raw), 200)


MAX_MERGE_LINES = 1000


def _note_merge(report: ImportReport, line: str) -> None:
    report.merged += 1
    if len(report.merges) < MAX_MERGE_LINES:
        report.merges.append(line)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0  # merged into an existing subscriber (or a row earlier in the file)
    suppressed: int = 0  # unsubscribed, bounced or complained: left so
    rejected: int = 0
    rejects_file: Path | None = None
    problems: list[str] = field(default_factory=list)  # the first few, for the terminal
    merged: int = 0  # rows merged with another spelling of the same address
    merges: list[str] = field(default_factory=list)  # one line each (the first 1,000)


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    for i, column in enumerate(header):
        if column in names:
            return i
    return None


@dataclass(frozen=True)
class _Columns:
    email: int
    name: int | None
    first: int | None
    last: int | None
    language: int | None
    lists: int | None
    status: int | None
    other: list[tuple[int, str]]

    @classmethod
    def from_header(cls, raw_header: list[str], path: Path) -> _Columns:
        header = [h.strip().strip("\ufeff").lower() for h in raw_header]
        email = _find(header, _EMAIL_COLUMNS)
        if email is None:
            raise SubscriberError(
                f"{path}:1: no email column; name one 'email' (found: {', '.join(raw_header)})"
            )
        known = {email}
        picks: dict[str, int | None] = {}
        for key, names in (
            ("name", _NAME_COLUMNS),
            ("first", _FIRST_COLUMNS),
            ("last", _LAST_COLUMNS),
            ("language", _LANGUAGE_COLUMNS),
            ("lists", _LIST_COLUMNS),
            ("status", _STATUS_COLUMNS),
        ):
            found = picks[key] = _find(header, names)
            if found is not None:
                known.add(found)
        other = [
            (i, raw_header[i].strip())
            for i in range(len(header))
            if i not in known and raw_header[i].strip()
        ]
        return cls(email=email, other=other, **picks)


@lru_cache(maxsize=4096)
def _split_lists(text: str) -> tuple[str, ...]:
    """Mailchimp writes tags as '"a","b"'; we also accept 'a, b' and 'a|b'.
    (Remembered: a file repeats a few tag sets on every row.)"""
    parts = [p.strip().strip('"').strip() for p in text.replace("|", ",").split(",")]
    return tuple(p for p in parts if p)


def _reader(handle: IO[str]) -> Any:
    """A CSV reader over the file, its delimiter guessed from the first line."""
    first = handle.readline()
    delimiter = _sniff_delimiter(first)
    if handle.seekable():
        handle.seek(0)  # read straight from the file, not through a generator
        return csv.reader(handle, delimiter=delimiter)
    return csv.reader(_chain(first, handle), delimiter=delimiter)


def _chain(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest


class _Rejects:
    """``<file>.rejects.csv``, made at the first rejected row: line, reason, the row."""

    def __init__(self, path: Path, header: list[str], report: ImportReport) -> None:
        self.path, self.header, self.report = path, header, report
        self.file: IO[str] | None = None
        self.writer: Any = None

    def add(self, source: Path, line: int, row: list[str], problem: SubscriberError) -> None:
        self.report.rejected += 1
        if len(self.report.problems) < 20:
            self.report.problems.append(f"{source}:{line}: {problem}")
        if self.file is None:
            self.file = self.path.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(["line", "reason", *self.header])
        self.writer.writerow([line, str(problem), *row])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.report.rejects_file = self.path


def import_csv(store: Store, path: Path, list_name: str | None) -> ImportReport:
    """Import every valid row; write the others to ``<file>.rejects.csv``.

    Rows for an address already in the database (or earlier in the file) are
    merged into it; an address that unsubscribed, bounced or complained stays so.
    """
    report = ImportReport()
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        try:
            reader = _reader(handle)
            header = next(reader)
        except StopIteration:
            raise SubscriberError(f"{path}: the file is empty") from None
        except UnicodeDecodeError:
            raise SubscriberError(f"{path}: not UTF-8 text; export it as UTF-8 CSV") from None
        except csv.Error as exc:
            raise SubscriberError(f"{path}:1: unreadable CSV: {exc}") from None
        columns = _Columns.from_header(header, path)
        rejects = _Rejects(path.with_name(path.stem + ".rejects.csv"), header, report)
        try:
            _import_rows(store, path, reader, columns, (list_name,) if list_name else (), rejects)
        except UnicodeDecodeError as exc:
            raise SubscriberError(
                f"{path}: not UTF-8 text ({exc.reason}); export it as "
                "UTF-8 CSV; the rows before it were imported"
            ) from None
        except csv.Error as exc:
            raise SubscriberError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from None
        finally:
            rejects.close()
    return report


def _import_rows(
    store: Store,
    path: Path,
    reader: Any,
    columns: _Columns,
    extra_lists: tuple[str, ...],
    rejects: _Rejects,
) -> None:
    """The rows after the header, parsed, checked and upserted a batch at a time."""
    report = rejects.report
    parse, email_i = _parser(columns, extra_lists), columns.email
    rows: list[_Row] = []
    lines: list[int] = []
    written: dict[int, str] = {}  # index in the batch -> the address as written, if not as stored
    # Addresses written differently from their normalised form in this file, so
    # that a later row with the plain spelling is known to merge with them too.
    odd_spellings: dict[str, str] = {}

    def flush() -> None:
        with store.transaction() as db:
            outcomes = store.upsert_many(db, rows, now_iso())
        counts = Counter(outcomes)
        report.added += counts["added"]
        report.updated += counts["updated"]
        report.suppressed += counts["suppressed"]
        for i, outcome in enumerate(outcomes):
            raw = written.get(i)
            if outcome == "added" and raw is None:
                continue
            email = rows[i][0]
            raw = raw or email
            first = odd_spellings.get(email, email)
            if outcome != "added" and raw != first:
                _note_merge(
                    report,
                    f"{path}:{lines[i]}: {raw} is the same address as {first}: "
                    "merged into one subscriber",
                )
            if raw != email and len(odd_spellings) < 100_000:
                odd_spellings.setdefault(email, raw)
        rows.clear()
        lines.clear()
        written.clear()

    for row in reader:
        if not "".join(row).strip():
            continue
        try:
            parsed = parse(row)
        except SubscriberError as exc:
            rejects.add(path, reader.line_num, row, exc)
            continue
        # (parse refused a row too short to have the address)
        if row[email_i] != parsed[0] and (raw := row[email_i].strip()) != parsed[0]:
            written[len(rows)] = raw
        rows.append(parsed)
        lines.append(reader.line_num)
        if len(rows) >= BATCH:
            flush()
    if rows:
        flush()


_Row = tuple[str, str, str, str, tuple[str, ...], str | None]


def _parser(columns: _Columns, extra_lists: tuple[str, ...]) -> Callable[[list[str]], _Row]:
    """A row parser for this file's columns: (email, name, language, attributes as
    JSON text, lists, status). Made once per file, so that per row there is only
    the work the row needs (this loop is most of an import's Python time)."""
    email_i, name_i, first_i, last_i = columns.email, columns.name, columns.first, columns.last
    language_i, lists_i, status_i = columns.language, columns.lists, columns.status
    joined_name = name_i is None and (first_i is not None or last_i is not None)
    # Attribute keys encoded once; values as JSON strings, the way json.dumps writes them.
    other = [(i, json_string(label) + ": ") for i, label in columns.other]
    used = [
        i
        for i in (email_i, name_i, first_i, last_i, language_i, lists_i, status_i)
        if i is not None
    ]
    # Short rows are padded to ``size`` cells; a column the file does not have
    # reads the last one, always empty.
    missing = max(used + [i for i, _ in other]) + 1
    size = missing + 1
    padding = [""] * size
    name_i, first_i, last_i, language_i, lists_i, status_i = (
        missing if i is None else i
        for i in (name_i, first_i, last_i, language_i, lists_i, status_i)
    )
    lists_of: dict[str, tuple[str, ...]] = {}

    def parse(row: list[str]) -> _Row:
        if len(row) < size:
            row = row + padding[len(row) :]
        email = normalise(row[email_i])
        if joined_name:
            name = " ".join(filter(None, (row[first_i].strip(), row[last_i].strip())))
        else:
            name = row[name_i].strip()
        status = None
        if status_word := row[status_i].strip().lower():
            status = _STATUS_WORDS.get(status_word)
            if status is None:
                raise SubscriberError(
                    f"status {status_word!r} is not one of {', '.join(sorted(_STATUS_WORDS))}"
                )
        attributes = "{}"
        if other:
            parts = [key + json_string(value) for i, key in other if (value := row[i].strip())]
            if parts:
                attributes = "{" + ", ".join(parts) + "}"
        listed = row[lists_i].strip()
        lists = lists_of.get(listed)
        if lists is None:
            lists = _split_lists(listed) + extra_lists if listed else extra_lists
            if len(lists_of) < 4096:
                lists_of[listed] = lists
        return (
            email,
            normalise_name(name) if name else "",
            row[language_i].strip()[:20],
            attributes,
            lists,
            status,
        )

    return parse


EXPORT_COLUMNS = [
    "email",
    "name",
    "status",
    "language",
    "lists",
    "attributes",
    "created_at",
    "updated_at",
]


def _text_cell(text: str) -> str:
    """Free text for a CSV cell that a spreadsheet opens: one that starts like a
    formula (``=``, ``+``, ``-``, ``@``, a tab or a return) gets a leading ``'``.
    Names and browsers' user agents come from anonymous sign-up forms; a name
    such as ``=HYPERLINK(...)`` must stay text (OWASP's CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(store: Store, out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for s in store.subscribers():
        writer.writerow(
            [
                s.email,
                _text_cell(s.name),
                s.status,
                s.language,
                "|".join(s.lists),
                json.dumps(s.attributes, ensure_ascii=False) if s.attributes else "",
                s.created_at,
                s.updated_at,
            ]
        )
        n += 1
    return n


def export_consent_csv(store: Store, out: IO[str]) -> int:
    """Every consent record (sign-ups, confirmations, preference changes)."""
    from composer.store.signups import CONSENT_COLUMNS, Signups

    writer = csv.writer(out)
    writer.writerow(CONSENT_COLUMNS)
    n = 0
    free_text = {CONSENT_COLUMNS.index(c) for c in ("user_agent", "page", "consent_text", "name")}
    for record in Signups(store).records():
        writer.writerow([_text_cell(v) if i in free_text else v for i, v in enumerate(record)])
        n += 1
    return n


def export_file(store: Store, path: Path | None, consent: bool = False) -> int:
    """Export to ``path`` (written whole or not at all), or to stdout when ``None``;
    ``consent``: the consent records instead of the subscribers."""
    import io
    import sys

    from composer.fsutil import write_atomic

    write = export_consent_csv if consent else export_csv
    if path is None:
        return write(store, sys.stdout)
    if path.is_dir():
        raise SubscriberError(
            f"{path}: is a folder; give a file name such as {path / 'subscribers.csv'}"
        )
    buffer = io.StringIO()
    n = write(store, buffer)
    try:
        write_atomic(path, buffer.getvalue().encode(), mode=0o600)
    except OSError as exc:
        raise SubscriberError(
            f"{path}: cannot write the export: {exc.strerror}; choose a folder you can write to"
        ) from None
    return n


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"status {status!r} is not one of {', '.join(STATUSES)}")


def add(store: Store, email: str, name: str, lists: list[str], language: str) -> tuple[str, str]:
    address = normalise(email)
    with store.transaction() as db:
        _, outcome = store.upsert(
            db, address, normalise_name(name), language, {}, lists, None, now_iso()
        )
    return address, outcome


_TOKEN_IN_SUBJECT = re.compile(r"unsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)


@dataclass
class MailboxReport:
    applied: int = 0
    unmatched: list[str] = field(default_factory=list)  # From of requests with no valid token


def unsubscribe_from_mailbox(store: Store, keys: list[str], path: Path) -> MailboxReport:
    """Apply the unsubscribe requests sent to the List-Unsubscribe mailto address.

    Our mailto link sets the subject to ``unsubscribe <token>``; a request is
    applied only when that token verifies (a From header is easy to forge).
    The others are listed for the editor to handle by hand.
    """
    import mailbox

    from composer.audience.tokens import verify

    if path.is_dir():
        box: mailbox.Mailbox = mailbox.Maildir(path, create=False)
    elif path.is_file():
        box = mailbox.mbox(path, create=False)
    else:
        raise SubscriberError(f"{path}: no such Maildir folder or mbox file")
    report = MailboxReport()
    for message in box:
        subject = str(message.get("Subject", ""))
        match = _TOKEN_IN_SUBJECT.search(subject)
        claim = verify(keys, match.group(1)) if match else None
        if claim is None:
            report.unmatched.append(clean(str(message.get("From", "(no From)"))))
            continue
        store.unsubscribe_id(claim.subscriber_id, "mailto request")
        report.applied += 1
    return report
