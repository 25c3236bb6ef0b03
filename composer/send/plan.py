"""What a send would do, before it does it: the audience, the checks, a dry
run that builds every message, and a single test copy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from composer.config import Settings
from composer.errors import IssueError, SendError
from composer.mail.addresses import normalise
from composer.mail.message import MessageTemplate, Recipient
from composer.mail.transport import Result, make_transport, run_blocking
from composer.send.prepare import Prepared, message_template, prepare
from composer.send.recipients import Recipients
from composer.send.relays import load_relays, relays_file
from composer.store.database import Store

# Complaint rates of the previous issue: a warning from the first, a refusal
# (unless --force) from the second (Gmail's bulk sender limits).
COMPLAINT_WARN = 0.001
COMPLAINT_REFUSE = 0.003


@dataclass(frozen=True)
class SendOptions:
    list_name: str | None = None
    limit: int | None = None
    connections: int = 4
    rate_per_second: float | None = None
    rate_per_hour: float | None = None
    force: bool = False
    resend_in_doubt: bool = False
    retry_delay: float = 60.0  # first retry of a 4xx after this; x4 each time
    max_attempts: int = 5
    max_wait: float = 900.0  # how long one run waits for deferred retries
    pause_after: int = 50  # failures in a row that pause the run
    reconnects: int = 5
    connect_backoff: float = 1.0  # seconds before the first connection's second try; x2 after
    not_after: float | None = None  # time.time() after which nothing more is sent


@dataclass(frozen=True)
class SendPlan:
    prepared: Prepared
    issue: str
    subject: str
    sender: str
    transport: str
    new: int  # active subscribers not yet queued for this issue
    waiting: int  # queued by an earlier run and not yet sent (pending, deferred)
    in_doubt: int  # in doubt from earlier runs (incl. ones a crash left 'sending')
    already_sent: int
    started_before: bool
    editions: dict[str, int] = field(default_factory=dict)  # the audience by edition
    # The previous issue's complaints: (issue, complaints, sent), when there is one.
    previous_complaints: tuple[str, int, int] | None = None

    @property
    def audience(self) -> int:
        return self.new + self.waiting


def plan_send(spec: str, settings: Settings, options: SendOptions) -> SendPlan:
    """What a send would do. Refuses an issue with errors or one edited since
    its sending started (unless ``force``). Its one write is housekeeping:
    unsent deliveries to people who have left since are dropped."""
    prepared = prepare(spec, settings)
    loaded, rendered = prepared.loaded, prepared.rendered
    if prepared.errors:
        raise IssueError(
            [*map(str, prepared.errors), f"{loaded.path}: fix these errors before sending"]
        )
    slug = prepared.slug
    with Store(settings.database, wait=settings.db_wait) as store:
        if options.list_name and not store.list_exists(options.list_name):
            raise SendError(
                f"no list named {options.list_name!r} in {settings.database}; "
                "see `newsletter subscribers count --list NAME`"
            )
        record = store.send_record(slug)
        store.drop_inactive(slug)
        counts = store.counts(slug)
        if record and record[0] != prepared.digest and not options.force:
            raise SendError(
                f"{loaded.path} changed after sending it started ({counts['sent']} sent); "
                "send the rest as it is now with --force, or undo the edit"
            )
        new = store.count_new(slug, options.list_name)
        waiting = store.count_waiting(slug)
        languages = store.audience_languages(slug, options.list_name, options.limit)
        previous = store.previous_issue(slug)
        complaints = (previous, *store.complaints(previous)) if previous else None
    if options.limit is not None:
        new = min(new, max(0, options.limit - waiting))
    editions = by_edition(prepared, languages)
    if complaints is not None and not options.force:
        issue, n, sent = complaints
        if sent and n / sent >= COMPLAINT_REFUSE:
            raise SendError(
                f"the previous issue ({issue}) drew complaints from {n / sent:.2%} of its "
                f"{sent:,} recipients (mailbox providers throttle or block senders from "
                f"{COMPLAINT_REFUSE:.1%}); find out why, then send anyway with --force"
            )
    return SendPlan(
        prepared=prepared,
        issue=slug,
        subject=rendered.subject,
        sender=settings.from_address,
        transport=_transport_label(settings, options),
        new=new,
        waiting=waiting,
        in_doubt=counts["in_doubt"] + counts["sending"],
        already_sent=counts["sent"],
        started_before=record is not None,
        editions=editions,
        previous_complaints=complaints,
    )


def by_edition(prepared: Prepared, languages: dict[str, int]) -> dict[str, int]:
    """Counts by subscriber language summed by the edition each language gets,
    every edition listed, the main one first."""
    counts: Counter[str] = Counter(dict.fromkeys(prepared.editions, 0))
    for language, n in languages.items():
        counts[prepared.edition_for(language)] += n
    return dict(counts)


@dataclass(frozen=True)
class DryRun:
    messages: int
    total_bytes: int


def _transport_label(settings: Settings, options: SendOptions) -> str:
    """The relay, or the relays of SMTP_RELAYS with their parts (the file is read
    and checked now, before anything is sent)."""
    relays = load_relays(settings, options.connections)
    if relays_file(settings) is None:
        return make_transport(settings).label
    total = sum(r.share for r in relays)
    return "SMTP relays " + "; ".join(
        f"{r.name} {r.settings.smtp_host}:{r.settings.smtp_port} ({r.connections} "
        f"connections, {r.share / total:.0%})"
        for r in relays
    )


def dry_run(plan: SendPlan, settings: Settings, options: SendOptions) -> DryRun:
    """Build every message the send would build (new and waiting ones); send nothing."""
    template = message_template(settings, plan.prepared)
    recipients = Recipients(settings, plan.issue, options.list_name or "")
    n = size = 0
    with Store(settings.database, wait=settings.db_wait) as store:
        for d in store.unsent(plan.issue, options.list_name):
            if options.limit is not None and n >= options.limit:
                break
            chunks = template.build_chunks(recipients.subscriber(d.subscriber_id, d.email, d.name))
            size += sum(map(len, chunks))
            n += 1
    return DryRun(n, size)


def _test_copy(
    spec: str, settings: Settings, address: str, edition: str | None = None
) -> tuple[str, Recipient, MessageTemplate]:
    prepared = prepare(spec, settings, only=edition)
    code = prepared.loaded.edition(edition).language if edition else prepared.main
    email = normalise(address)
    template = message_template(settings, prepared, subject_prefix="[TEST] ", edition=code)
    key = None if code == prepared.main else code
    return email, Recipients(settings, prepared.slug).test_copy(email, key), template


def build_test_copy(spec: str, settings: Settings, address: str, edition: str | None = None) -> int:
    """The test copy's size, built and signed as it would be sent; nothing sent."""
    _, recipient, template = _test_copy(spec, settings, address, edition)
    return len(template.build(recipient))


def send_test_copy(
    spec: str, settings: Settings, address: str, edition: str | None = None
) -> tuple[str, Result]:
    """One copy to ``address`` (of ``edition``, default the main one), subject
    prefixed [TEST]; recorded nowhere."""
    transport = make_transport(settings)
    email, recipient, template = _test_copy(spec, settings, address, edition)
    conn = transport.connect()
    try:
        eight_bit = settings.smtp_8bitmime and conn.eight_bit and template.can_send_8bit()
        chunks = template.build_chunks(recipient, wire=transport.wire, eight_bit=eight_bit)
        sender = settings.bounce_address or template.envelope_from  # bounces of a test copy
        tx = conn.transaction(sender, email, chunks, eight_bit=eight_bit)
        result = run_blocking(conn, tx)
    finally:
        conn.close()
    return transport.label, result
