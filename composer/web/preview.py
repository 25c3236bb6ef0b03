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

from composer.compose import message_template, resolve_issue_path, sample_recipient
from composer.config import Settings
from composer.errors import ComposerError, IssueError
from composer.issue import load_issue
from composer.lint import check_issue
from composer.message import Recipient, personalise
from composer.render import GMAIL_CLIP_BYTES, render_issue, templates_root


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
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.version = 0
        self._lock = threading.Lock()
        self.rebuild()

    def _recipient(self, loaded: Any) -> Recipient:
        sample = sample_recipient(self.settings, loaded)
        if self.as_email is None:
            return sample
        from composer.compose import unsubscribe_urls
        from composer.store import Store
        from composer.subscribers import normalise_email

        address = normalise_email(self.as_email)
        with Store(self.settings.db_path) as store:
            subscriber = store.subscriber(address)
        if subscriber is None:
            raise ComposerError(f"--as {address}: not a subscriber; see "
                                "`newsletter subscribers list`")
        https, mailto = unsubscribe_urls(self.settings, subscriber.id, "")
        return Recipient(key=str(subscriber.id), email=subscriber.email, name=subscriber.name,
                         unsubscribe_url=https, unsubscribe_mailto=mailto,
                         view_url=sample.view_url)

    def rebuild(self) -> None:
        try:
            loaded = load_issue(self.shown_path)
            rendered = render_issue(loaded, self.settings.home, cache_dir=self.settings.cache_dir)
            recipient = self._recipient(loaded)
            html, text = personalise(rendered, recipient)
            raw = message_template(self.settings, loaded, rendered).build(recipient)
            head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            findings = [(f.severity, str(f)) for f in check_issue(loaded, rendered)]
            snap = Snapshot(rendered.subject, html, text, head.replace("\r\n ", " ").split("\r\n"),
                            rendered.html_bytes, findings)
            with self._lock:
                self.snapshot, self.error = snap, None
                self.version += 1
        except IssueError as exc:
            self._fail("\n".join(exc.problems))
        except ComposerError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = message
            self.version += 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            snap, error, version = self.snapshot, self.error, self.version
        return {
            "version": version, "error": error,
            "subject": snap.subject if snap else "", "size": snap.size if snap else 0,
            "size_kb": f"{snap.size / 1024:.1f}" if snap else "0", "limit": GMAIL_CLIP_BYTES,
            "headers": snap.headers if snap else [],
            "findings": [{"severity": s, "text": t} for s, t in snap.findings] if snap else [],
        }

    def watch(self, stop: threading.Event) -> None:
        """Rebuild on changes until ``stop`` is set (run it in a thread)."""
        import watchfiles

        templates = templates_root(self.settings.home).resolve()
        folder = self.path.parent
        for changes in watchfiles.watch(folder, templates, stop_event=stop, debounce=100,
                                        step=25, raise_interrupt=False):
            if any(Path(p).resolve() == self.path or Path(p).resolve().is_relative_to(templates)
                   for _, p in changes):
                self.rebuild()
