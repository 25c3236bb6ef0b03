"""The preview's state: the issue rendered as sent, rebuilt when files change.

A watcher thread (watchfiles) rebuilds within about 100 ms of a change to the
issue file (watched through its folder, so editors that replace the file on
save are seen) or any template. A broken issue keeps the last good email on
screen and shows the error; fixing the file recovers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.config import Settings
from composer.errors import ComposerError, IssueError
from composer.issue.checks import GMAIL_CLIP_BYTES
from composer.issue.files import resolve_issue_path
from composer.mail.addresses import normalise
from composer.mail.message import Recipient, personalise
from composer.render.i18n import language_name
from composer.render.themes import theme_dirs
from composer.send.prepare import Prepared, message_template, prepare
from composer.send.recipients import Recipients
from composer.store.database import Store


@dataclass(frozen=True)
class Snapshot:
    subject: str
    html: str
    text: str
    headers: list[str]
    size: int
    findings: list[tuple[str, str]]  # (severity, text)


class PreviewState:
    def __init__(self, settings: Settings, spec: str, as_email: str | None = None) -> None:
        self.settings = settings
        self.shown_path = resolve_issue_path(spec, settings.home)  # as messages name it
        self.path = self.shown_path.resolve()
        self.as_email = as_email
        self.snapshots: dict[str, Snapshot] = {}  # by edition, the main one first
        self.default_edition: str | None = None  # --as a subscriber: their edition
        self.error: str | None = None
        self.version = 0
        self.theme = "default"
        self._lock = threading.Lock()
        self.rebuild()

    @property
    def snapshot(self) -> Snapshot | None:
        """The edition shown first: the subscriber's (``--as``), else the main one."""
        return self.edition_snapshot(None)

    def edition_snapshot(self, code: str | None) -> Snapshot | None:
        with self._lock:
            snaps = self.snapshots
            code = code if code in snaps else self.default_edition
        if code in snaps:
            return snaps[code]
        return next(iter(snaps.values()), None)

    def _recipient(
        self, prepared: Prepared, recipients: Recipients, edition: str
    ) -> tuple[Recipient, bool]:
        """The recipient shown in ``edition``, and whether it is that subscriber's own."""
        key = None if edition == prepared.main else edition
        if self.as_email is None:
            return recipients.sample(key), False
        address = normalise(self.as_email)
        with Store(self.settings.database, create=False) as store:
            subscriber = store.subscriber(address)
        if subscriber is None:
            raise ComposerError(
                f"--as {address}: not a subscriber; see `newsletter subscribers list`"
            )
        own = prepared.edition_for(subscriber.language) == edition
        return recipients.subscriber(subscriber.id, subscriber.email, subscriber.name, key), own

    def rebuild(self) -> None:
        try:
            prepared = prepare(str(self.shown_path), self.settings)
            self.theme = prepared.loaded.issue.theme_name
            recipients = Recipients(self.settings, prepared.slug)
            findings = [(f.severity, str(f)) for f in prepared.findings]
            snaps: dict[str, Snapshot] = {}
            default = None
            for code, rendered in prepared.editions.items():
                recipient, own = self._recipient(prepared, recipients, code)
                default = code if own else default
                html, text = personalise(rendered, recipient)
                raw = message_template(self.settings, prepared, edition=code).build(recipient)
                head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
                snaps[code] = Snapshot(
                    rendered.subject,
                    html,
                    text,
                    head.replace("\r\n ", " ").split("\r\n"),
                    rendered.html_bytes,
                    findings,
                )
            with self._lock:
                self.snapshots, self.error = snaps, None
                self.default_edition = default or prepared.main
                self.version += 1
        except IssueError as exc:
            self._fail("\n".join(exc.problems))
        except ComposerError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = message
            self.version += 1

    def as_json(self, edition: str | None = None) -> dict[str, Any]:
        snap = self.edition_snapshot(edition)
        with self._lock:
            error, version = self.error, self.version
            codes = list(self.snapshots)
            shown = edition if edition in self.snapshots else self.default_edition
        return {
            "version": version,
            "error": error,
            "edition": shown,
            "editions": [{"code": c, "name": language_name(c)} for c in codes],
            "subject": snap.subject if snap else "",
            "size": snap.size if snap else 0,
            "size_kb": f"{snap.size / 1024:.1f}" if snap else "0",
            "limit": GMAIL_CLIP_BYTES,
            "headers": snap.headers if snap else [],
            "findings": [{"severity": s, "text": t} for s, t in snap.findings] if snap else [],
        }

    def watch(self, stop: threading.Event) -> None:
        """Rebuild on changes until ``stop`` is set (run it in a thread)."""
        import watchfiles

        folder = self.path.parent
        roots = [self.settings.home / "templates", *theme_dirs(self.theme, self.settings.home)]
        templates = sorted({r.resolve() for r in roots if r.is_dir()})
        for changes in watchfiles.watch(
            folder, *templates, stop_event=stop, debounce=100, step=25, raise_interrupt=False
        ):
            if any(
                Path(p).resolve() == self.path
                or any(Path(p).resolve().is_relative_to(t) for t in templates)
                for _, p in changes
            ):
                self.rebuild()
