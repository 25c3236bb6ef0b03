"""``newsletter status``: an issue's delivery log, as the editor needs it."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    bounces: dict[str, dict[str, int]] = field(default_factory=dict)  # provider -> kind -> n
    sent_by_provider: dict[str, int] = field(default_factory=dict)
    by_relay: dict[str, dict[str, int]] = field(default_factory=dict)  # relay -> label -> n

    def bounce_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for per in self.bounces.values():
            for kind, n in per.items():
                totals[kind] = totals.get(kind, 0) + n
        return totals

    @property
    def complaint_rate(self) -> float:
        sent = self.counts.get("sent", 0)
        return self.bounce_totals().get("complaint", 0) / sent if sent else 0.0


def status(spec: str, settings: Settings) -> IssueStatus:
    """The delivery log of an issue. Rows a stopped run left in flight are
    shown as in doubt (they are, and the next send records them so)."""
    slug = issue_slug(spec)
    running = SendLock(settings.database).held()
    with Store(settings.database, create=False) as store:
        if store.send_record(slug) is None:
            raise SendError(
                f"issue {slug} has not been sent from {settings.database}: nothing "
                f"to show; send it with `newsletter send {slug}`"
            )
        counts = store.counts(slug)
        problems = store.problems(slug, ("failed", "in_doubt", "deferred", "sending"))
        bounces = store.bounce_counts(slug)
        by_provider = store.sent_by_provider(slug)
        by_relay = store.counts_by_relay(slug)
    if not running:
        counts["in_doubt"] += counts.pop("sending")
    shown = []
    for email, state, reply, attempts in problems:
        if state == "sending" and not running:
            state = "in_doubt"
            reply = reply or "the sending process stopped while this message was in flight"
        shown.append((email, STATE_LABELS[state], reply, attempts))
    return IssueStatus(
        slug,
        {STATE_LABELS[k]: v for k, v in counts.items()},
        running,
        shown,
        bounces,
        by_provider,
        {
            relay: {
                STATE_LABELS["in_doubt" if k == "sending" and not running else k]: v
                for k, v in per.items()
            }
            for relay, per in by_relay.items()
        },
    )
