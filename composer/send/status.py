"""``newsletter status``: an issue's delivery log, as the editor needs it."""

from __future__ import annotations

from dataclasses import dataclass

from composer.config import Settings
from composer.errors import SendError
from composer.issue.files import issue_slug
from composer.send.lock import SendLock
from composer.store.database import Store

STATE_LABELS = {
    "sent": "sent",
    "pending": "not yet sent",
    "deferred": "deferred",
    "failed": "failed",
    "in_doubt": "in doubt",
    "sending": "in flight",
}


@dataclass(frozen=True)
class IssueStatus:
    issue: str
    counts: dict[str, int]  # keyed by STATE_LABELS values
    running: bool
    problems: list[tuple[str, str, str, int]]  # (email, label, reply, attempts)


def status(spec: str, settings: Settings) -> IssueStatus:
    """The delivery log of an issue. Rows a stopped run left in flight are
    shown as in doubt (they are, and the next send records them so)."""
    slug = issue_slug(spec)
    running = SendLock(settings.db_path).held()
    with Store(settings.db_path, create=False) as store:
        if store.send_record(slug) is None:
            raise SendError(
                f"issue {slug} has not been sent from {settings.db_path}: nothing "
                f"to show; send it with `newsletter send {slug}`"
            )
        counts = store.counts(slug)
        problems = store.problems(slug, ("failed", "in_doubt", "deferred", "sending"))
    if not running:
        counts["in_doubt"] += counts.pop("sending")
    shown = []
    for email, state, reply, attempts in problems:
        if state == "sending" and not running:
            state = "in_doubt"
            reply = reply or "the sending process stopped while this message was in flight"
        shown.append((email, STATE_LABELS[state], reply, attempts))
    return IssueStatus(slug, {STATE_LABELS[k]: v for k, v in counts.items()}, running, shown)
