"""The send engine: queue, connections, rate, retries, resume.

Crash safety rests on one rule: a message is recorded as in flight
('sending') at the last moment before it can be delivered, that is just
before its final ``.`` is written to the relay (or it is moved into the
outbox), in the same commit that records the previous message's outcome
(``store.DeliveryLog.step``). So after a crash:

- 'pending' messages never reached the point of delivery: they are sent on
  resume (the relay discards a transaction that never ended);
- 'sending' messages (at most one per connection) may or may not have been
  delivered: they are reported in doubt and, by the documented policy, not
  sent again unless asked (``--resend-in-doubt``);
- 'sent' messages are never sent again.

Any worker failure stops the run cleanly: what was done is recorded, the
lock is released, and the summary says how to resume.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from composer.config import Settings
from composer.errors import (
    ComposerError,
    ConnectError,
    SubscriberError,
    TransportError,
)
from composer.mail.message import MessageTemplate
from composer.mail.replies import same_refusal
from composer.mail.transport import Connection, Result, Transport, make_transport
from composer.send.lock import SendLock
from composer.send.plan import SendOptions, SendPlan
from composer.send.prepare import message_template
from composer.send.rate import RateLimiter
from composer.send.recipients import Recipients
from composer.store.database import Delivery, Store
from composer.store.delivery_log import DeliveryLog, Outcome

log = logging.getLogger(__name__)

# The same policy refusal for this many messages in a row stops the run: the
# relay refuses us, not these subscribers.
POLICY_STREAK = 5
FINAL_WAIT = 30.0  # seconds a stopping worker waits to record its last outcome
RELAY_REFUSES = (
    "the relay refuses to send for us: fix SMTP credentials or the From domain "
    "(NEWSLETTER_FROM), then run send again to resume"
)


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
    in_doubt_left: int  # messages this run leaves in doubt (its own and a crash's)


class _Engine:
    def __init__(
        self,
        settings: Settings,
        options: SendOptions,
        template: MessageTemplate,
        issue: str,
        list_name: str,
        transport: Transport,
        total: int,
    ) -> None:
        self.settings = settings
        self.options = options
        self.template = template
        self.issue = issue
        self.recipients = Recipients(settings, issue, list_name)
        self.transport = transport
        self.progress = Progress(total=total)
        self.queue: queue.Queue[Delivery | None] = queue.Queue(maxsize=options.connections * 64)
        self.stop = threading.Event()
        self.reason: str | None = None
        self.error: ComposerError | None = None
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._policy: list[tuple[int, str]] = []  # the current run of policy refusals
        self.requeue: set[int] = set()  # refused for the relay's reasons: send on resume
        self.rate = RateLimiter(options.rate_per_second, options.rate_per_hour)

    def halt(self, reason: str, error: ComposerError | None = None) -> None:
        with self._lock:
            if self.reason is None:
                self.reason, self.error = reason, error
        self.stop.set()

    def _outcome(self, d: Delivery, result: Result, attempts: int) -> Outcome:
        o = self.options
        with self._lock:
            p = self.progress
            if result.kind == "sent":
                p.sent += 1
                self._in_a_row = 0
                self._policy.clear()
                return (d.subscriber_id, "sent", result.reply, attempts, 0.0, None)
            if result.kind == "in_doubt":
                p.in_doubt += 1
                return (d.subscriber_id, "in_doubt", result.reply, attempts, 0.0, None)
            self._track_policy(d, result)
            self._in_a_row += 1
            if self._in_a_row >= o.pause_after:
                self.reason = self.reason or (
                    f"paused after {self._in_a_row} failures in a row (last: {result.reply}); "
                    "check the relay and the list, then run send again to resume"
                )
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

    def _track_policy(self, d: Delivery, result: Result) -> None:
        """Count the same policy refusal repeated message after message (caller
        holds the lock). At POLICY_STREAK the run stops, with the relay's words, and
        those messages go back to 'not yet sent' for the resumed run."""
        if not result.policy or (
            self._policy and not same_refusal(self._policy[-1][1], result.reply)
        ):
            self._policy.clear()
        if result.policy:
            self._policy.append((d.subscriber_id, result.reply))
            if len(self._policy) >= POLICY_STREAK and self.reason is None:
                self.requeue.update(sid for sid, _ in self._policy)
                self.reason = f"{RELAY_REFUSES}; it answered: {result.reply}"
                self.stop.set()

    def _deliver(
        self,
        conn: Connection | None,
        d: Delivery,
        chunks: list[bytes],
        commit: Callable[[], None],
        ahead: tuple[str, str] | None = None,
    ) -> tuple[Connection | None, Result]:
        """Send one message, reconnecting as needed; returns the connection to reuse."""
        result = Result("retry", "not attempted")
        for attempt in range(self.options.reconnects + 1):
            if attempt:
                self.stop.wait(0.1 * 2 ** (attempt - 1))
                if self.stop.is_set():
                    return conn, result
            if conn is None:
                try:
                    conn = self.transport.connect()
                except ConnectError as exc:  # transient: try again
                    result = Result("retry", str(exc))
                    continue
                except TransportError as exc:  # bad credentials, certificate, no STARTTLS
                    self.halt(str(exc), exc)
                    return None, Result("retry", str(exc))
            result = conn.send(self.template.envelope_from, d.email, chunks, commit, ahead)
            if result.reconnect:
                conn.close()
                conn = None
            if result.kind != "retry":
                return conn, result
            log.debug("retrying %s after: %s", d.email, result.reply)
        self.halt(
            f"{self.transport.label}: giving up after {self.options.reconnects} "
            f"reconnects ({result.reply}); run send again to resume"
        )
        return conn, result

    def _build(self, item: Delivery) -> list[bytes] | Result:
        try:
            return self.template.build_chunks(
                self.recipients.subscriber(item.subscriber_id, item.email, item.name),
                wire=self.transport.wire,
            )
        except SubscriberError as exc:  # one bad row must not stop the run
            return Result("failed", str(exc))

    def _take_ready(self) -> tuple[Delivery, list[bytes] | Result] | None:
        """The next message, if one is queued now, taken and built: its envelope can
        go out with the current message's final "." (never blocks)."""
        if self.stop.is_set() or self.rate.gap:
            return None
        try:
            item = self.queue.get_nowait()
        except queue.Empty:
            return None
        if item is None:  # the end marker: leave it for the loop
            self.queue.task_done()
            self.queue.put(None)
            return None
        return item, self._build(item)

    def worker(self, book: DeliveryLog, conn: Connection | None = None) -> None:
        previous: Outcome | None = None
        ready: tuple[Delivery, list[bytes] | Result] | None = None  # taken, not yet sent
        try:
            while True:
                if ready is None:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        if previous is not None:  # record it now rather than when work comes
                            book.step(previous, None)
                            previous = None
                        item = self.queue.get()
                    if item is None:
                        self.queue.task_done()
                        return
                    if self.stop.is_set():
                        self.queue.task_done()
                        continue  # left 'pending': never started
                    self.rate.wait(self.stop)
                    ready = (item, self._build(item))
                item, built = ready
                ready = None
                try:
                    if self.stop.is_set():
                        continue  # left 'pending': never started
                    if isinstance(built, Result):  # it could not be built
                        book.step(previous, None)
                        previous = self._outcome(item, built, item.attempts + 1)
                        continue
                    ready = self._take_ready() if conn is not None else None
                    ahead = None
                    if ready is not None and not isinstance(ready[1], Result):
                        ahead = (self.template.envelope_from, ready[0].email)

                    def commit(sid: int = item.subscriber_id) -> None:
                        """The point of delivery: record the previous outcome and
                        this message in flight, in one commit."""
                        nonlocal previous
                        book.step(previous, sid)
                        previous = None

                    conn, result = self._deliver(conn, item, built, commit, ahead)
                    if previous is not None:  # refused before its commit point
                        book.step(previous, None)
                    if result.kind == "retry" or result.stop:  # not delivered: not yet sent
                        previous = (
                            item.subscriber_id,
                            "pending",
                            result.reply,
                            item.attempts,
                            0.0,
                            None,
                        )
                        if result.stop:
                            self.halt(
                                f"{RELAY_REFUSES}; it answered: {result.reply}"
                                if self.transport.wire
                                else result.reply
                            )
                    else:
                        previous = self._outcome(item, result, item.attempts + 1)
                finally:
                    self.queue.task_done()
        except ComposerError as exc:
            self.halt(str(exc), exc)
        except Exception as exc:  # a bug must stop the run cleanly too, never hang it
            log.exception("send worker failed")
            self.halt(f"internal error in a send worker: {exc!r}")
        finally:
            if ready is not None:  # taken but never sent: it stays 'pending'
                self.queue.task_done()
            # The last outcome is known: give the database a while longer to take
            # it, or that message would be reported in doubt.
            with contextlib.suppress(ComposerError):
                book.step(previous, None, wait=max(self.settings.db_wait, FINAL_WAIT))
            if conn is not None:
                conn.close()  # drops a transaction written ahead, unsent

    def stop_workers(self, workers: list[threading.Thread]) -> None:
        """Stop every worker and wait for it: queued messages are dropped (they stay
        'pending'), then one end marker each. Never blocks on a full queue, even
        when every worker has died."""
        self.stop.set()
        while True:
            try:
                self.queue.get_nowait()
                self.queue.task_done()
            except queue.Empty:
                break
        for w in workers:
            while w.is_alive():
                try:
                    self.queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for w in workers:
            while w.is_alive():
                w.join(0.2)

    def feed(
        self,
        store: Store,
        report: Callable[[Progress], None] | None,
        lost: threading.Event | None = None,
    ) -> None:
        """Queue due deliveries in id order; then wait for deferred ones, within max_wait."""
        deadline = time.monotonic() + self.options.max_wait
        last_report = 0.0
        while not self.stop.is_set():
            if lost is not None and lost.is_set():
                self.halt("another send took over this database's send lease; stopped")
                return
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
                            if lost is not None and lost.is_set():
                                self.halt(
                                    "another send took over this database's send lease; stopped"
                                )
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


def _first_connection(transport: Transport, attempts: int, backoff: float) -> Connection:
    """Connect before writing anything: a wrong host, password or certificate is
    reported at once. A refused or timed-out connection is tried a few times with
    backoff first (a relay restarting, a listener not up yet)."""
    for attempt in range(attempts):
        try:
            return transport.connect()
        except ConnectError as exc:
            if attempt + 1 >= attempts:
                raise
            delay = backoff * 2**attempt
            log.warning("%s; trying again in %g s", exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def run_send(
    plan: SendPlan,
    settings: Settings,
    options: SendOptions,
    report: Callable[[Progress], None] | None = None,
) -> SendSummary:
    """Send the planned issue. Ctrl-C (KeyboardInterrupt) stops cleanly."""
    started = time.monotonic()
    transport = make_transport(settings)
    list_name = options.list_name or ""
    template = message_template(settings, plan.prepared)
    with (
        SendLock(settings.db_path, settings.db_wait) as lock,
        Store(settings.db_path, wait=settings.db_wait) as store,
    ):
        first = _first_connection(
            transport, settings.smtp_connect_attempts, options.connect_backoff
        )
        try:
            settled = store.settle_interrupted(plan.issue)
            store.drop_inactive(plan.issue)
            if options.resend_in_doubt:
                store.requeue_in_doubt(plan.issue)
            store.start_send(plan.issue, plan.prepared.rendered.digest, plan.subject)
            waiting = store.counts(plan.issue)
            store.enqueue(
                plan.issue,
                options.list_name,
                None
                if options.limit is None
                else max(0, options.limit - waiting["pending"] - waiting["deferred"]),
            )
            total = store.counts(plan.issue)
        except BaseException:
            first.close()
            raise
        try:
            book = DeliveryLog(settings.db_path, plan.issue, settings.db_wait)
        except BaseException:
            first.close()
            raise
        engine = _Engine(
            settings,
            options,
            template,
            plan.issue,
            list_name,
            transport,
            total["pending"] + total["deferred"],
        )
        workers = [
            threading.Thread(
                target=engine.worker,
                name=f"send-{i}",
                daemon=True,
                args=(book, first if i == 0 else None),
            )
            for i in range(max(1, options.connections))
        ]
        for w in workers:
            w.start()
        interrupted = False
        try:
            engine.feed(store, report, lock.lost)
        except KeyboardInterrupt:
            interrupted = True
            engine.halt("interrupted (Ctrl-C)")
        except ComposerError as exc:  # the database, mostly: stop cleanly, never hang
            engine.halt(str(exc), exc)
        finally:
            engine.stop_workers(workers)
            book.close()
            log.debug("delivery log: %d records in %d commits", book.records, book.commits)
        if report is not None:
            report(engine.progress)
        with contextlib.suppress(ComposerError):
            store.drop_inactive(plan.issue)  # unsubscribed while this run went on
            if engine.requeue:
                store.requeue(plan.issue, engine.requeue)
        if isinstance(engine.error, TransportError):  # credentials, certificate, ...
            raise engine.error
        try:
            counts = store.counts(plan.issue)
        except ComposerError:
            counts = dict.fromkeys(
                ("pending", "sending", "sent", "deferred", "failed", "in_doubt"), 0
            )
        left = engine.progress.in_doubt + (0 if options.resend_in_doubt else settled)
        return SendSummary(
            progress=engine.progress,
            elapsed=time.monotonic() - started,
            counts=counts,
            stopped=engine.reason,
            interrupted=interrupted,
            settled_in_doubt=settled,
            in_doubt_left=left,
        )
