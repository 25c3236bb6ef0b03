"""The send engine: queue, connections, rate, retries, resume.

Crash safety rests on one rule, kept by ``store.DeliveryLog.step``: a message
is marked 'sending' in the same commit that records the previous message's
outcome, before its first byte goes out. After a crash, each connection left
at most one row in 'sending'; the next run reports those in doubt (the message
may or may not have been delivered) and, by the documented policy, does not
send them again unless asked (``--resend-in-doubt``). Everything 'pending' was
never started and is sent; everything 'sent' is never sent again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from composer.compose import (
    check,
    list_id,
    message_template,
    resolve_issue_path,
    unsubscribe_urls,
    view_url,
)
from composer.config import Settings
from composer.errors import (
    ComposerError,
    ConnectError,
    IssueError,
    SendError,
    SubscriberError,
    TransportError,
)
from composer.issue import LoadedIssue, load_issue
from composer.message import MessageTemplate, Recipient
from composer.render import RenderedIssue, render_issue
from composer.store import Delivery, DeliveryLog, Outcome, Store
from composer.subscribers import normalise_email
from composer.transport import Connection, Result, Transport, make_transport

log = logging.getLogger("composer.delivery")


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


@dataclass(frozen=True)
class SendPlan:
    loaded: LoadedIssue
    rendered: RenderedIssue
    issue: str
    subject: str
    sender: str
    transport: str
    new: int  # active subscribers not yet queued for this issue
    waiting: int  # queued by an earlier run and not yet sent (pending, deferred)
    in_doubt: int  # in doubt from earlier runs (incl. ones a crash left 'sending')
    already_sent: int
    started_before: bool

    @property
    def audience(self) -> int:
        return self.new + self.waiting


@dataclass
class Progress:
    total: int
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.in_doubt

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class SendSummary:
    progress: Progress
    elapsed: float
    counts: dict[str, int]  # the issue's delivery log after the run
    stopped: str | None  # why the run stopped early, if it did
    interrupted: bool
    settled_in_doubt: int  # rows a crashed run left 'sending', now in doubt


def _issue(spec: str, settings: Settings) -> tuple[LoadedIssue, RenderedIssue]:
    loaded = load_issue(resolve_issue_path(spec, settings.home))
    rendered = render_issue(loaded, settings.home, cache_dir=settings.cache_dir)
    return loaded, rendered


def plan_send(spec: str, settings: Settings, options: SendOptions) -> SendPlan:
    """What a send would do. Refuses an issue with errors or one edited since
    its sending started (unless ``force``). Its one write is housekeeping:
    unsent deliveries to people who have left since are dropped."""
    loaded, rendered, findings = check(spec, settings)
    errors = [str(f) for f in findings if f.severity == "error"]
    if errors:
        raise IssueError([*errors, f"{loaded.path}: fix these errors before sending"])
    slug = loaded.issue.slug
    with Store(settings.db_path) as store:
        if options.list_name and not store.list_exists(options.list_name):
            raise SendError(f"no list named {options.list_name!r} in {settings.db_path}; "
                            "see `newsletter subscribers count --list NAME`")
        record = store.send_record(slug)
        store.drop_inactive(slug)
        counts = store.counts(slug)
        if record and record[0] != rendered.digest and not options.force:
            raise SendError(
                f"{loaded.path} changed after sending it started ({counts['sent']} sent); "
                "send the rest as it is now with --force, or undo the edit")
        new = store.count_new(slug, options.list_name)
        waiting = store.count_waiting(slug)
    if options.limit is not None:
        new = min(new, max(0, options.limit - waiting))
    return SendPlan(
        loaded=loaded, rendered=rendered, issue=slug, subject=rendered.subject,
        sender=settings.from_address, transport=make_transport(settings).label, new=new,
        waiting=waiting,
        in_doubt=counts["in_doubt"] + counts["sending"], already_sent=counts["sent"],
        started_before=record is not None)


class SendLock:
    """One send at a time per database: an OS lock on ``<db>.send.lock``,
    released by the kernel even if the process is killed."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".send.lock")
        self._file: IO[str] | None = None

    def __enter__(self) -> SendLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise SendError(f"another `newsletter send` (pid {pid}) is running on "
                            f"{self.path.with_suffix('').with_suffix('')}; wait for it to "
                            "finish or stop it (Ctrl-C), then run send again") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()

    def held(self) -> bool:
        """Whether a send is running now (without taking the lock)."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False


class RateLimiter:
    """Evenly spaced sends: at most ``per_second`` and ``per_hour``."""

    def __init__(self, per_second: float | None, per_hour: float | None) -> None:
        gaps = [1 / per_second if per_second else 0.0, 3600 / per_hour if per_hour else 0.0]
        self.gap = max(gaps)
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        if not self.gap:
            return
        with self._lock:
            now = time.monotonic()
            at = max(self._next, now)
            self._next = at + self.gap
        if at > now:
            stop.wait(at - now)


class _Engine:
    def __init__(self, settings: Settings, options: SendOptions, template: MessageTemplate,
                 issue: str, list_name: str, transport: Transport, total: int) -> None:
        self.settings = settings
        self.options = options
        self.template = template
        self.issue = issue
        self.list_name = list_name
        self.transport = transport
        self.view_url = view_url(settings, issue)
        self.progress = Progress(total=total)
        self.queue: queue.Queue[Delivery | None] = queue.Queue(maxsize=options.connections * 64)
        self.stop = threading.Event()
        self.reason: str | None = None
        self.error: ComposerError | None = None
        self._lock = threading.Lock()
        self._in_a_row = 0
        self.rate = RateLimiter(options.rate_per_second, options.rate_per_hour)

    def halt(self, reason: str, error: ComposerError | None = None) -> None:
        with self._lock:
            if self.reason is None:
                self.reason, self.error = reason, error
        self.stop.set()

    def recipient(self, d: Delivery) -> Recipient:
        https, mailto = unsubscribe_urls(self.settings, d.subscriber_id, self.list_name)
        return Recipient(key=str(d.subscriber_id), email=d.email, name=d.name,
                         unsubscribe_url=https, unsubscribe_mailto=mailto, view_url=self.view_url)

    def _outcome(self, d: Delivery, result: Result, attempts: int) -> Outcome:
        o = self.options
        with self._lock:
            p = self.progress
            if result.kind == "sent":
                p.sent += 1
                self._in_a_row = 0
                return (d.subscriber_id, "sent", result.reply, attempts, 0.0, None)
            if result.kind == "in_doubt":
                p.in_doubt += 1
                return (d.subscriber_id, "in_doubt", result.reply, attempts, 0.0, None)
            self._in_a_row += 1
            if self._in_a_row >= o.pause_after:
                self.reason = self.reason or (
                    f"paused after {self._in_a_row} failures in a row (last: {result.reply}); "
                    "check the relay and the list, then run send again to resume")
                self.stop.set()
            if result.kind == "deferred" and attempts < o.max_attempts:
                p.deferred += 1
                later = time.time() + o.retry_delay * 4 ** (attempts - 1)
                return (d.subscriber_id, "deferred", result.reply, attempts, later, None)
            p.failed += 1
            reply = result.reply
            if result.kind == "deferred":
                reply += f" (gave up after {attempts} attempts)"
            status = "bounced" if result.bounce else None
            return (d.subscriber_id, "failed", reply, attempts, 0.0, status)

    def _deliver(self, conn: Connection | None, d: Delivery, chunks: list[bytes]
                 ) -> tuple[Connection | None, Result]:
        """Send one message, reconnecting as needed; returns the connection to reuse."""
        result = Result("retry", "not attempted")
        for attempt in range(self.options.reconnects + 1):
            if attempt:
                self.stop.wait(0.1 * 2 ** (attempt - 1))
            if conn is None:
                try:
                    conn = self.transport.connect()
                except ConnectError as exc:  # transient: try again
                    result = Result("retry", str(exc))
                    continue
                except TransportError as exc:  # bad credentials, certificate, no STARTTLS
                    self.halt(str(exc), exc)
                    return None, Result("retry", str(exc))
            result = conn.send(self.template.envelope_from, d.email, chunks)
            if result.reconnect:
                conn.close()
                conn = None
            if result.kind != "retry":
                return conn, result
            log.debug("retrying %s after: %s", d.email, result.reply)
        self.halt(f"{self.transport.label}: giving up after {self.options.reconnects} "
                  f"reconnects ({result.reply}); run send again to resume")
        return conn, result

    def worker(self, conn: Connection | None = None) -> None:
        book = DeliveryLog(self.settings.db_path, self.issue)
        previous: Outcome | None = None
        wire = self.transport.wire
        try:
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    if previous is not None:  # record it now rather than when work comes
                        book.step(previous, None)
                        previous = None
                    item = self.queue.get()
                try:
                    if item is None:
                        return
                    if self.stop.is_set():
                        continue  # left 'pending': never started
                    self.rate.wait(self.stop)
                    try:
                        chunks = self.template.build_chunks(self.recipient(item), wire=wire)
                    except SubscriberError as exc:  # one bad row must not stop the run
                        book.step(previous, None)
                        previous = self._outcome(item, Result("failed", str(exc)),
                                                 item.attempts + 1)
                        continue
                    book.step(previous, item.subscriber_id)
                    previous = None
                    conn, result = self._deliver(conn, item, chunks)
                    if result.kind == "retry":  # not delivered: back to pending
                        previous = (item.subscriber_id, "pending", result.reply, item.attempts,
                                    0.0, None)
                    else:
                        previous = self._outcome(item, result, item.attempts + 1)
                finally:
                    self.queue.task_done()
        except ComposerError as exc:
            self.halt(str(exc), exc)
        finally:
            with contextlib.suppress(ComposerError):
                book.step(previous, None)
            book.close()
            if conn is not None:
                conn.close()

    def feed(self, store: Store, report: Callable[[Progress], None] | None) -> None:
        """Queue due deliveries in id order; then wait for deferred ones, within max_wait."""
        deadline = time.monotonic() + self.options.max_wait
        last_report = 0.0
        while not self.stop.is_set():
            after = 0
            while not self.stop.is_set():
                batch = store.due(self.issue, after, time.time(), 500)
                for d in batch:
                    while not self.stop.is_set():
                        try:
                            self.queue.put(d, timeout=0.2)
                            break
                        except queue.Full:
                            last_report = self._report(report, last_report)
                    last_report = self._report(report, last_report)
                if len(batch) < 500:
                    break
                after = batch[-1].subscriber_id
            while self.queue.unfinished_tasks and not self.stop.is_set():
                time.sleep(0.05)
                last_report = self._report(report, last_report)
            next_at = store.next_deferred_at(self.issue)
            if next_at is None or self.stop.is_set():
                return
            wait = next_at - time.time()
            if time.monotonic() + wait > deadline:
                return  # left deferred for the next run
            while wait > 0 and not self.stop.is_set():
                self.stop.wait(min(wait, 0.2))
                last_report = self._report(report, last_report)
                wait = next_at - time.time()

    def _report(self, report: Callable[[Progress], None] | None, last: float) -> float:
        now = time.monotonic()
        if report is not None and now - last >= 0.2:
            report(self.progress)
            return now
        return last


def run_send(plan: SendPlan, settings: Settings, options: SendOptions,
             report: Callable[[Progress], None] | None = None) -> SendSummary:
    """Send the planned issue. Ctrl-C (KeyboardInterrupt) stops cleanly."""
    started = time.monotonic()
    transport = make_transport(settings)
    list_name = options.list_name or ""
    template = message_template(settings, plan.loaded, plan.rendered)
    with SendLock(settings.db_path), Store(settings.db_path) as store:
        # Connect before writing anything: a wrong host, password or certificate
        # is reported at once, and this connection serves the first worker.
        first = transport.connect()
        settled = store.settle_interrupted(plan.issue)
        store.drop_inactive(plan.issue)
        if options.resend_in_doubt:
            store.requeue_in_doubt(plan.issue)
        store.start_send(plan.issue, plan.rendered.digest, plan.subject)
        waiting = store.counts(plan.issue)
        store.enqueue(plan.issue, options.list_name,
                      None if options.limit is None else
                      max(0, options.limit - waiting["pending"] - waiting["deferred"]))
        total = store.counts(plan.issue)
        engine = _Engine(settings, options, template, plan.issue, list_name, transport,
                         total["pending"] + total["deferred"])
        workers = [threading.Thread(target=engine.worker, name=f"send-{i}", daemon=True,
                                    args=(first if i == 0 else None,))
                   for i in range(max(1, options.connections))]
        for w in workers:
            w.start()
        interrupted = False
        try:
            engine.feed(store, report)
        except KeyboardInterrupt:
            interrupted = True
            engine.halt("interrupted (Ctrl-C)")
        finally:
            for _ in workers:
                engine.queue.put(None)
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
        if report is not None:
            report(engine.progress)
        store.drop_inactive(plan.issue)  # unsubscribed while this run went on
        if isinstance(engine.error, TransportError):  # credentials, certificate, ...
            raise engine.error
        return SendSummary(progress=engine.progress, elapsed=time.monotonic() - started,
                           counts=store.counts(plan.issue), stopped=engine.reason,
                           interrupted=interrupted, settled_in_doubt=settled)


# -- dry run and test send ---------------------------------------------------

@dataclass(frozen=True)
class DryRun:
    messages: int
    total_bytes: int


def dry_run(plan: SendPlan, settings: Settings, options: SendOptions) -> DryRun:
    """Build every message the send would build (new and waiting ones); send nothing."""
    template = message_template(settings, plan.loaded, plan.rendered)
    list_name = options.list_name or ""
    n = size = 0
    with Store(settings.db_path) as store:
        for d in _audience(store, plan.issue, options.list_name):
            if options.limit is not None and n >= options.limit:
                break
            https, mailto = unsubscribe_urls(settings, d.subscriber_id, list_name)
            chunks = template.build_chunks(Recipient(
                key=str(d.subscriber_id), email=d.email, name=d.name, unsubscribe_url=https,
                unsubscribe_mailto=mailto, view_url=view_url(settings, plan.issue)))
            size += sum(map(len, chunks))
            n += 1
    return DryRun(n, size)


def _audience(store: Store, issue: str, list_name: str | None) -> Iterator[Delivery]:
    after = 0
    while True:
        rows = store.query(
            "SELECT s.id, s.email, s.name FROM subscribers s WHERE s.status = 'active' AND "
            "s.id > ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.issue = ? AND "
            "d.subscriber_id = s.id AND d.state IN ('sent', 'failed', 'in_doubt'))"
            + (" AND s.id IN (SELECT m.subscriber_id FROM memberships m JOIN lists l ON "
               "l.id = m.list_id WHERE l.name = ?)" if list_name else "")
            + " ORDER BY s.id LIMIT 1000",
            [after, issue, *([list_name] if list_name else [])])
        yield from (Delivery(r[0], r[1], r[2], 0) for r in rows)
        if len(rows) < 1000:
            return
        after = rows[-1][0]


def send_test_copy(spec: str, settings: Settings, address: str) -> tuple[str, Result]:
    """One copy to ``address``, subject prefixed [TEST]; recorded nowhere."""
    loaded, rendered = _issue(spec, settings)
    email = normalise_email(address)
    template = message_template(settings, loaded, rendered, subject_prefix="[TEST] ")
    https, mailto = unsubscribe_urls(settings, 0, list_id(settings, loaded))
    transport = make_transport(settings)
    chunks = template.build_chunks(Recipient(
        key=f"test-{email}", email=email, name="", unsubscribe_url=https,
        unsubscribe_mailto=mailto, view_url=view_url(settings, loaded.issue.slug)),
        wire=transport.wire)
    conn = transport.connect()
    try:
        result = conn.send(template.envelope_from, email, chunks)
    finally:
        conn.close()
    return transport.label, result


STATE_LABELS = {"sent": "sent", "pending": "not yet sent", "deferred": "deferred",
                "failed": "failed", "in_doubt": "in doubt", "sending": "in flight"}


@dataclass(frozen=True)
class IssueStatus:
    issue: str
    counts: dict[str, int]  # keyed by STATE_LABELS values
    running: bool
    problems: list[tuple[str, str, str, int]]  # (email, label, reply, attempts)


def status(spec: str, settings: Settings) -> IssueStatus:
    """The delivery log of an issue. Rows a stopped run left in flight are
    shown as in doubt (they are, and the next send records them so)."""
    path = resolve_issue_path(spec, settings.home)
    slug = path.stem[:10] if path.suffix in (".yaml", ".yml") else spec
    running = SendLock(settings.db_path).held()
    with Store(settings.db_path) as store:
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
