"""The send engine: one thread drives every connection, with the delivery log.

Crash safety rests on one rule: a message is recorded as in flight
('sending') at the last moment before it can be delivered, that is just
before its final ``.`` is written to the relay (or it is moved into the
outbox), in the same commit that records the previous message's outcome. So
after a crash:

- 'pending' messages never reached the point of delivery: they are sent on
  resume (the relay discards a transaction that never ended);
- 'sending' messages (at most one per connection) may or may not have been
  delivered: they are reported in doubt and, by the documented policy, not
  sent again unless asked (``--resend-in-doubt``);
- 'sent' messages are never sent again.

How it runs: each connection is a session (a generator, ``_Engine._session``)
that takes the next message, runs its transaction (``mail.transport``) and
yields what it waits for: a reply, the point of delivery (COMMIT), work, or a
moment (backoff, rate). The loop (``_Engine.run``) waits on every socket at
once (``poll``), resumes the sessions whose wait is over, and records all the
sessions that reached the point of delivery together in one transaction (one
fsync; near the relay it holds them up to HOLD for the others whose replies are
due, so that all the connections share it), then lets them write their final
"." at once. No threads, no queue, no lock: the first release's four threads
spent more time handing the GIL and the SQLite lock to each other (some 50
futex calls per message) than sending.

Any failure stops the run cleanly: what was done is recorded, the lock is
released, and the summary says how to resume. Ctrl-C (or SIGTERM) stops
taking new messages and lets the ones in flight finish; a second one aborts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

from composer.audience.tokens import verp_address, verp_token
from composer.config import Settings
from composer.errors import (
    ComposerError,
    ConnectError,
    SubscriberError,
    TransportError,
)
from composer.issue.editions import choose
from composer.mail.message import MessageTemplate
from composer.mail.replies import same_refusal
from composer.mail.transport import (
    COMMIT,
    FINAL,
    REPLY,
    Connection,
    Result,
    Transport,
    make_transport,
)
from composer.send.lock import SendLock, gone, sender_issue
from composer.send.plan import SendOptions, SendPlan, by_edition
from composer.send.prepare import message_templates
from composer.send.rate import RateLimiter
from composer.send.recipients import Recipients
from composer.send.relays import load_relays
from composer.store.database import Delivery, Store
from composer.store.delivery_log import DeliveryLog, Outcome

log = logging.getLogger(__name__)

# The same policy refusal for this many messages in a row stops the run: the
# relay refuses us, not these subscribers.
POLICY_STREAK = 5
FINAL_WAIT = 30.0  # seconds the last records may wait for a locked database
REPORT_EVERY = 0.2  # seconds between progress reports (and the longest poll)
BATCH = 500  # deliveries read from the database at a time
# Sharing a send (PostgreSQL): claims are small, so that senders share the work to
# its end and a sender that dies holds little; others are looked at this often.
CLAIM_PER_LINK = 4
CLAIM_ALONE = 200  # a sender that is alone claims this many at a time
CLAIM_POLL = 0.001  # seconds between looks at a claim in hand when the queue is empty
# A relay this far away (the reply to a final "." takes this long, on average) leaves
# the engine idle for most of each round trip. On PostgreSQL the engine then commits
# the log itself instead of handing the group to the log's helper thread and back
# (two wake-ups and the GIL, about 0.5 ms of every cycle through a 20 ms round
# trip); nearer, the helper's round trip to the server overlaps the engine's work.
# On SQLite the engine always commits itself: with the connections in step (HOLD)
# it has nothing else to do meanwhile, and the hand-off cost more than it saved
# (6,205 against 5,525 msgs/s, small issue, smtp-sink, same run; seed issue even).
FAR = 0.005
# A group that is ready waits up to HOLD for the connections whose replies are due,
# from a relay that has answered a final "." within NEAR (see _gathered): on
# loopback four connections then share each fsync instead of two, which halves the
# log's cost per message.
HOLD = 0.001
NEAR = 0.001
REAP_EVERY = 2.0  # seconds between looks for senders that are gone
OTHERS_EVERY = 0.5  # seconds between looks at what other senders still hold
SHARE_WAIT = 0.005  # seconds a relay ahead of its share waits before looking again
LEFT_EVERY = 0.5  # seconds between looks for subscribers who left during the send
RELAY_REFUSES = (
    "the relay refuses to send for us: fix SMTP credentials or the From domain "
    "(NEWSLETTER_FROM), then run send again to resume"
)
# What a session waits for, besides a transaction's REPLY, FINAL and COMMIT.
WORK = "work"  # the next message (resumed with a Delivery, or None: no more)
SLEEP = "sleep"  # until the session's ``wake`` time (or the run stops)


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
    sent_by_edition: dict[str, int] = field(default_factory=dict)  # the issue's, all runs
    notes: list[str] = field(default_factory=list)  # relays taken out of the send, and why


Session = Generator[str, "Delivery | None", None]


@dataclass(eq=False)
class _Relay:
    """One relay of the send, as the engine keeps track of it."""

    name: str
    transport: Transport
    connections: int
    rate: RateLimiter
    share: float = 1.0
    taken: int = 0  # messages its sessions took
    out: str | None = None  # why it was taken out of the send
    policy: list[tuple[Delivery, str]] = field(default_factory=list)  # its refusals in a row
    fastest: float = 0.0  # its quickest reply to a final "." yet (0: none yet)


@dataclass(eq=False)
class _Link:
    """One connection's session and what it waits for."""

    conn: Connection | None
    gen: Session | None = None
    op: str | None = None  # what it waits for (None: runnable, or finished)
    wake: float = 0.0  # SLEEP: until when; REPLY/FINAL: the deadline
    previous: Outcome | None = None  # its last outcome, not yet recorded
    current: int | None = None  # the message its next COMMIT marks 'sending'
    relay: _Relay | None = None
    final_at: float = 0.0  # when it began to wait for the reply to a final "."


class _Engine:
    def __init__(
        self,
        settings: Settings,
        options: SendOptions,
        templates: dict[str, MessageTemplate],
        issue: str,
        list_name: str,
        relays: list[_Relay],
        total: int,
        claimer: str = "",
    ) -> None:
        self.settings = settings
        # Sharing the send with other senders (PostgreSQL): this one's lease holder,
        # under which it claims deliveries; "" when it is the only sender.
        self.claimer = claimer
        self._reaped_at = 0.0
        self.reaped = 0  # messages of senders that stopped, now in doubt
        self._others = True  # other senders of this issue are running (until seen not)
        self.final_wait = 0.0  # how long a reply to a final "." takes (moving average)
        self._claims: ThreadPoolExecutor | None = None
        self._claim: Future[tuple[list[Delivery], int]] | None = None
        self._claim_store: Store | None = None
        self._alone = 0  # the last claim's size while alone (see _claim_now)
        self.options = options
        self.templates = templates  # by edition, the main one first
        self.template = template = next(iter(templates.values()))
        self._main = next(iter(templates))
        self._edition_of: dict[str, str | None] = {}  # a subscriber's language -> edition
        self._bounce_base = settings.bounce_address if relays[0].transport.wire else ""
        self._key = settings.secret_key.get()
        self.issue = issue
        self.recipients = Recipients(settings, issue, list_name)
        self.relays = relays
        self.transport = relays[0].transport  # every relay's wire form is the same
        self.progress = Progress(total=total)
        self.queue: deque[Delivery] = deque()
        self.stop = False
        self.reason: str | None = None
        self.error: ComposerError | None = None
        self.interrupted = False
        self._in_a_row = 0
        self.notes: list[str] = []  # relays taken out, and why
        # Subscribers who left during the run (an unsubscribe on the web, a bounce
        # processed meanwhile): never sent to, within LEFT_EVERY seconds.
        self.left: set[int] = set()
        self._events = 0
        self._left_checked = 0.0
        self.links: list[_Link] = []
        self.requeue: set[int] = set()  # refused for the relay's reasons: send on resume
        self.rate = RateLimiter(options.rate_per_second, options.rate_per_hour)
        # Feeding: a pass over the due deliveries in id order, then (when every
        # session is idle) another for deferred ones that came due, within max_wait.
        self._after = 0
        self._pass_done = False
        self._fed_all = False
        self._feed_wake = 0.0
        self._deadline = time.monotonic() + options.max_wait
        self._committing: list[_Link] = []  # the sessions whose commit is in hand
        self._hold_until = 0.0  # a group waiting for more sessions commits by then
        # Signed messages are built ahead by helper threads: the signature (RSA, the
        # body's hash) runs in C without the GIL, on the other core, while the loop
        # goes on with the sockets.
        self._pool = ThreadPoolExecutor(2, "sign") if template.signer is not None else None
        self._built: dict[int, Future[list[bytes] | Result]] = {}
        # 8bit bodies when the relay offers 8BITMIME (the first connection says).
        self.eight_bit = False

    def halt(self, reason: str, error: ComposerError | None = None) -> None:
        if self.reason is None:
            self.reason, self.error = reason, error
        self.stop = True

    # -- outcomes ------------------------------------------------------------------

    def _outcome(
        self, d: Delivery, result: Result, attempts: int, relay: _Relay | None = None
    ) -> Outcome:
        o = self.options
        p = self.progress
        if result.kind == "sent":
            p.sent += 1
            self._in_a_row = 0
            if relay is not None and relay.policy:
                relay.policy.clear()
            return (d.subscriber_id, "sent", result.reply, attempts, 0.0, None)
        if result.kind == "in_doubt":
            p.in_doubt += 1
            return (d.subscriber_id, "in_doubt", result.reply, attempts, 0.0, None)
        if relay is not None and self._track_policy(d, result, relay):
            return (d.subscriber_id, "pending", result.reply, attempts - 1, 0.0, None)
        self._in_a_row += 1
        if self._in_a_row >= o.pause_after:
            self.halt(
                f"paused after {self._in_a_row} failures in a row (last: {result.reply}); "
                "check the relay and the list, then run send again to resume"
            )
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

    def _track_policy(self, d: Delivery, result: Result, relay: _Relay) -> bool:
        """Count the same policy refusal repeated message after message by one
        relay. At POLICY_STREAK the relay refuses us, not these subscribers: with
        other relays left it is taken out and those messages go to the others
        (True: this one too); else the run stops, with the relay's words, and those
        messages go back to 'not yet sent' for the resumed run."""
        if result.policy and relay.out is not None:  # its other connections' refusals
            self.queue.appendleft(d)
            return True
        streak = relay.policy
        if not result.policy or (streak and not same_refusal(streak[-1][1], result.reply)):
            streak.clear()
        if not result.policy:
            return False
        streak.append((d, result.reply))
        if len(streak) < POLICY_STREAK:
            return False
        earlier = [x for x, _ in streak[:-1]]
        streak.clear()
        if self._take_out(relay, f"it refused us: {result.reply}"):
            self.progress.failed -= len(earlier)
            self.queue.extendleft(reversed(earlier))
            self.requeue.update(x.subscriber_id for x in earlier)  # if the run stops first
            self.queue.appendleft(d)
            return True
        if self.reason is None:
            self.requeue.update(x.subscriber_id for x in [*earlier, d])
            self.halt(f"{RELAY_REFUSES}; it answered: {result.reply}")
        return False

    def _alive(self) -> list[_Relay]:
        return [r for r in self.relays if r.out is None]

    def _take_out(self, relay: _Relay, why: str) -> bool:
        """Take ``relay`` out of this send if another is left (True), noting why."""
        if relay.out is not None:
            return True
        if len(self._alive()) <= 1:
            return False
        relay.out = why
        note = f"relay {relay.name} taken out: {why}; its messages went to the others"
        self.notes.append(note)
        log.info("%s", note)
        return True

    def _behind_share(self, relay: _Relay) -> bool:
        """Whether ``relay`` may take a message now: messages are spread by share, so
        a relay ahead of its share waits for the others (within a few messages)."""
        if len(self.relays) < 2:
            return True
        # Only relays that are connected count: one still (re)connecting must not
        # hold the others up.
        alive = [r for r in self._alive() if any(k.relay is r and k.conn for k in self.links)]
        if len(alive) < 2 or relay not in alive:
            return True
        least = min(r.taken / r.share for r in alive)
        return relay.taken / relay.share <= least + 2 / relay.share

    # -- a session -----------------------------------------------------------------

    def _build(self, item: Delivery) -> list[bytes] | Result:
        built = self._built.pop(item.subscriber_id, None)
        return built.result() if built is not None else self._build_now(item)

    def _envelope(self, d: Delivery) -> str:
        """The envelope sender: with NEWSLETTER_BOUNCE_ADDRESS, a VERP address
        naming the subscriber and the issue, so a bounce says whose it is."""
        if not self._bounce_base or d.subscriber_id >= 1 << 40:
            return self.template.envelope_from
        token = verp_token(self._key, d.subscriber_id, self.issue)
        return verp_address(self._bounce_base, token)

    def _edition(self, language: str) -> str | None:
        """The edition of a subscriber whose language is ``language`` (None: the main)."""
        try:
            return self._edition_of[language]
        except KeyError:
            code: str | None = choose(language, self.templates, self._main)
            if code == self._main:
                code = None
            self._edition_of[language] = code
            return code

    def _build_now(self, item: Delivery) -> list[bytes] | Result:
        edition = self._edition(item.language) if len(self.templates) > 1 else None
        template = self.templates[edition] if edition else self.template
        try:
            return template.build_chunks(
                self.recipients.subscriber(item.subscriber_id, item.email, item.name, edition),
                wire=self.transport.wire,
                eight_bit=self.eight_bit,
            )
        except SubscriberError as exc:  # one bad row must not stop the run
            return Result("failed", str(exc))

    def _take_ready(self, relay: _Relay) -> tuple[Delivery, list[bytes] | Result] | None:
        """The next message, if one is queued now, taken and built: its envelope can
        go out with the current message's final "." (never waits)."""
        if self.stop or self.rate.gap or relay.rate.gap or not self.queue:
            return None
        if relay.out is not None or not self._behind_share(relay):
            return None
        item = self.queue.popleft()
        relay.taken += 1
        return item, self._build(item)

    def _record_previous(self, link: _Link) -> Generator[str, Delivery | None, None]:
        """Record the link's last outcome now, on its own."""
        if link.previous is not None:
            link.current = None
            yield COMMIT

    def _sleep(self, link: _Link, until: float) -> Generator[str, Delivery | None, None]:
        link.wake = until
        yield SLEEP

    def _session(self, link: _Link) -> Session:
        relay = link.relay
        assert relay is not None
        ready: tuple[Delivery, list[bytes] | Result] | None = None  # taken, not yet sent
        try:
            while True:
                if relay.out is not None:  # taken out: what it holds goes to the others
                    if ready is not None:
                        self.queue.appendleft(ready[0])
                    yield from self._record_previous(link)
                    return
                if ready is None:
                    if self.queue and not self.stop and not self._behind_share(relay):
                        yield from self._sleep(link, time.monotonic() + SHARE_WAIT)
                        continue
                    item = self.queue.popleft() if self.queue and not self.stop else None
                    if item is None:
                        yield from self._record_previous(link)  # rather than when work comes
                        item = yield WORK
                        if item is None:
                            return
                    relay.taken += 1
                    if self.stop:
                        continue  # left 'pending': never started
                    slots = [t for t in (self.rate.slot(), relay.rate.slot()) if t is not None]
                    if slots:
                        yield from self._sleep(link, max(slots))
                    ready = (item, self._build(item))
                item, built = ready
                ready = None
                if self.stop:
                    continue  # left 'pending': never started
                if isinstance(built, Result):  # it could not be built
                    yield from self._record_previous(link)
                    link.previous = self._outcome(item, built, item.attempts + 1, relay)
                    continue
                ready = self._take_ready(relay) if link.conn is not None else None
                ahead = None
                if ready is not None and not isinstance(ready[1], Result):
                    ahead = (self._envelope(ready[0]), ready[0].email)
                result = yield from self._deliver(link, item, built, ahead)
                yield from self._record_previous(link)  # refused before its commit point
                if result.kind == "retry" or result.stop:  # not delivered: not yet sent
                    link.previous = (
                        item.subscriber_id,
                        "pending",
                        result.reply,
                        item.attempts,
                        0.0,
                        None,
                    )
                    if result.stop and self.transport.wire:
                        self._take_out(relay, f"it refused us: {result.reply}")
                    if relay.out is not None:  # another relay sends it
                        self.queue.appendleft(item)
                    elif result.stop:
                        self.halt(
                            f"{RELAY_REFUSES}; it answered: {result.reply}"
                            if self.transport.wire
                            else result.reply
                        )
                else:
                    link.previous = self._outcome(item, result, item.attempts + 1, relay)
        except ComposerError as exc:
            self.halt(str(exc), exc)
        except Exception as exc:  # a bug must stop the run cleanly too, never hang it
            log.exception("send session failed")
            self.halt(f"internal error in a send session: {exc!r}")
        finally:
            # A message taken but never sent stays 'pending'; a transaction written
            # ahead is dropped with the connection (never QUIT or "." into its data).
            if link.conn is not None:
                link.conn.close()
                link.conn = None

    def _deliver(
        self,
        link: _Link,
        d: Delivery,
        chunks: list[bytes],
        ahead: tuple[str, str] | None,
    ) -> Generator[str, Delivery | None, Result]:
        """Send one message, reconnecting as needed. A relay that cannot be reached
        again, or that refuses our credentials, is taken out of the send when
        another is left (the message goes to the others); else the run stops."""
        relay = link.relay
        assert relay is not None
        result = Result("retry", "not attempted")
        for attempt in range(self.options.reconnects + 1):
            if attempt:
                yield from self._sleep(link, time.monotonic() + 0.1 * 2 ** (attempt - 1))
                if self.stop or relay.out is not None:
                    return result
            if link.conn is None:
                try:
                    link.conn = relay.transport.connect()
                except ConnectError as exc:  # transient: try again
                    result = Result("retry", str(exc))
                    continue
                except TransportError as exc:  # bad credentials, certificate, no STARTTLS
                    if not self._take_out(relay, str(exc)):
                        self.halt(str(exc), exc)
                    return Result("retry", str(exc))
            link.current = d.subscriber_id
            result = yield from link.conn.transaction(
                self._envelope(d), d.email, chunks, ahead, self.eight_bit
            )
            if result.reconnect:
                link.conn.close()
                link.conn = None
            if result.kind != "retry":
                return result
            log.debug("retrying %s after: %s", d.email, result.reply)
        if not self._take_out(relay, f"it stopped answering ({result.reply})"):
            self.halt(
                f"{relay.transport.label}: giving up after {self.options.reconnects} "
                f"reconnects ({result.reply}); run send again to resume"
            )
        return result

    # -- the loop ------------------------------------------------------------------

    def run(
        self,
        firsts: list[Connection | None],
        store: Store,
        book: DeliveryLog,
        report: Callable[[Progress], None] | None,
        lost: threading.Event | None = None,
    ) -> None:
        """``firsts``: each relay's first connection (None: a relay that could not be
        reached, already taken out)."""
        self.eight_bit = (
            self.settings.smtp_8bitmime
            and all(c.eight_bit for c in firsts if c is not None)
            and all(t.can_send_8bit() for t in self.templates.values())
        )
        self._events = store.last_event()
        links = [
            _Link(first if i == 0 else None, relay=relay)
            for relay, first in zip(self.relays, firsts, strict=True)
            if relay.out is None
            for i in range(max(1, relay.connections))
        ]
        self.links = links
        live = list(links)
        poller = select.poll()
        watched: dict[int, int] = {}
        last_report = 0.0
        with _signals_stop(self):
            try:
                for link in links:
                    link.gen = self._session(link)
                    self._resume(link, None)
                while live:
                    now = time.monotonic()
                    if lost is not None and lost.is_set() and not self.stop:
                        self.halt("another send took over this database's send lease; stopped")
                    not_after = self.options.not_after
                    if not_after is not None and not self.stop and time.time() >= not_after:
                        self.halt(
                            "the --not-after time passed: the rest is not sent (a run with "
                            "a later --not-after, or none, sends it)"
                        )
                    self._watch_left(store, now)
                    self._feed(store, live)
                    progressed = self._wake(live, now)
                    if not book.busy:
                        committing = [k for k in live if k.op == COMMIT]
                        if not committing:
                            self._hold_until = 0.0
                        elif self._gathered(live, len(committing), now):
                            self._start_commit(book, committing)
                            progressed = True
                    live = [k for k in live if k.gen is not None]
                    if now - last_report >= REPORT_EVERY and report is not None:
                        report(self.progress)
                        last_report = now
                    timeout = 0.0 if progressed or not live else self._timeout(live, now)
                    if self._poll(poller, watched, live, book, timeout):
                        self._finish_commit(book)
            finally:
                if book.busy:  # let the group in hand become durable (or fail)
                    os.read(book.fd, 1)
                    with contextlib.suppress(ComposerError):
                        self._finish_commit(book)
                for link in links:  # on an abort (a second Ctrl-C) or a bug
                    if link.gen is not None:
                        link.gen.close()
                        link.gen = None
                if self._pool is not None:
                    self._pool.shutdown(cancel_futures=True)
                # The last outcomes are known: give the database a while longer to take
                # them, or those messages would be reported in doubt.
                with contextlib.suppress(ComposerError):
                    book.commit(
                        [(k.previous, None, "") for k in links if k.previous is not None],
                        wait=max(self.settings.db_wait, FINAL_WAIT),
                    )

    def _resume(
        self, link: _Link, value: Delivery | None, error: BaseException | None = None
    ) -> None:
        assert link.gen is not None
        try:
            link.op = link.gen.throw(error) if error is not None else link.gen.send(value)
        except StopIteration:
            link.gen, link.op = None, None
            return
        if link.op in (REPLY, FINAL):
            s = self.settings
            now = time.monotonic()
            link.wake = now + (s.smtp_data_timeout if link.op == FINAL else s.smtp_timeout)
            if link.op == FINAL:
                link.final_at = now

    def _wake(self, live: list[_Link], now: float) -> bool:
        """Resume every session whose wait is over; whether any was."""
        progressed = False
        for link in live:
            while link.gen is not None:
                op = link.op
                if op in (REPLY, FINAL):
                    conn = link.conn
                    assert conn is not None
                    if conn.replies:
                        if op == FINAL:
                            took = now - link.final_at
                            self.final_wait += (took - self.final_wait) / 8
                            assert link.relay is not None
                            fastest = link.relay.fastest
                            link.relay.fastest = min(fastest, took) if fastest else took
                        self._resume(link, None)
                    elif conn.broken is not None:
                        self._resume(link, None, conn.broken)
                    elif now >= link.wake:
                        timeout = (
                            self.settings.smtp_data_timeout
                            if op == FINAL
                            else self.settings.smtp_timeout
                        )
                        self._resume(link, None, TimeoutError(f"no reply within {timeout:g} s"))
                    else:
                        break
                elif op == WORK:
                    if self.queue and not self.stop:
                        self._resume(link, self.queue.popleft())
                    elif self._fed_all or self.stop:
                        self._resume(link, None)
                    else:
                        break
                elif op == SLEEP and (now >= link.wake or self.stop):
                    self._resume(link, None)
                else:
                    break
                progressed = True
        return progressed

    def _gathered(self, live: list[_Link], committing: int, now: float) -> bool:
        """Whether to commit the sessions at their point of delivery now, or hold
        them (at most HOLD) for the others, whose replies are due.

        Committed as soon as each is ready, four connections to a relay on loopback
        drift apart and share each fsync in twos (10,000 commits for 20,000
        messages); held, they stay in step, four to a commit. That pays only where
        the relay answers in well under a millisecond, so that the log is what
        limits the rate. Farther, the connections held in step only queue behind
        each other at the relay (through 1.8 and 3.3 ms round trips: 1,003 against
        1,376 and 775 against 945 msgs/s), so a relay counts as near by its
        quickest reply to a final "." (NEAR): queueing at the relay makes replies
        slower, never quicker, than the round trip.

        The hold only delays the "." of messages whose records are not yet
        durable: what is in doubt after a crash is unchanged."""
        if self.stop:
            return True
        if not self._hold_until:
            self._hold_until = now + HOLD
        return group_complete(live, committing) or now >= self._hold_until

    def _start_commit(self, book: DeliveryLog, links: list[_Link]) -> None:
        """The point of delivery of every session waiting for it, in one commit; they
        resume when it is durable (``_finish_commit``)."""
        self._hold_until = 0.0
        records = [(k.previous, k.current, _name(k)) for k in links]
        try:
            if self.final_wait >= FAR or not book.remote:  # see FAR
                book.commit(records, here=True)
                started = False
            else:
                started = book.start(records)
        except ComposerError as exc:
            for k in links:
                self._resume(k, None, exc)
            return
        self._committing = links
        if not started:
            self._finish_commit(book, durable=False)

    def _finish_commit(self, book: DeliveryLog, durable: bool = True) -> None:
        links, self._committing = self._committing, []
        try:
            if durable:
                book.finish()
        except ComposerError as exc:
            for k in links:
                if k.gen is not None:
                    self._resume(k, None, exc)
            return
        for k in links:
            k.previous = k.current = None
            if k.gen is not None:
                self._resume(k, None)

    def _watch_left(self, store: Store, now: float) -> None:
        """Every LEFT_EVERY seconds: who unsubscribed (or bounced, or complained)
        since the last look leaves the queue; their rows stay unsent and are
        dropped at the end of the run."""
        if now - self._left_checked < LEFT_EVERY:
            return
        self._left_checked = now
        if self.claimer and now - self._reaped_at >= REAP_EVERY:
            self._reaped_at = now
            self._reap(store)
        self._events, left = store.left_since(self._events)
        if not left:
            return
        self.left |= left
        before = len(self.queue)
        self.queue = deque(d for d in self.queue if d.subscriber_id not in self.left)
        for sid in left:
            future = self._built.pop(sid, None)
            if future is not None:
                future.cancel()
        self.progress.total -= before - len(self.queue)

    def _reap(self, store: Store) -> None:
        self.reaped += reap_gone(store, self.issue, self.claimer, self.notes)
        self._others = self._others_running(store)

    def _others_running(self, store: Store) -> bool:
        """Whether other senders of this issue are running."""
        return any(
            sender_issue(lease) == self.issue and lease.holder != self.claimer and not gone(lease)
            for lease in store.senders()
        )

    def _feed(self, store: Store, live: list[_Link]) -> None:
        """Keep the queue stocked: due deliveries in id order, then deferred ones as
        they come due (within max_wait)."""
        if self._fed_all:
            return
        if self.stop:
            self._fed_all = True
            return
        if not self._pass_done:
            if self.claimer:
                self._feed_claims(live)
            elif len(self.queue) < 2 * len(live) + 8:
                self._take(store.due(self.issue, self._after, time.time(), BATCH), BATCH)
            return
        # The pass is over. Once every session is idle (all outcomes recorded), see
        # whether deferred messages come due soon enough to wait for.
        if self.queue or any(k.op != WORK for k in live) or time.monotonic() < self._feed_wake:
            return
        if self.claimer:  # other senders still hold some: wait for them, or reap them
            self._reap(store)
            if store.claimed_elsewhere(self.issue, self.claimer):
                self._pass_done = False
                self._feed_wake = time.monotonic() + OTHERS_EVERY
                return
            if store.unclaimed(self.issue):  # given back by a sender that stopped
                self._pass_done = False
                return
        next_at = store.next_deferred_at(self.issue)
        if next_at is None:
            self._fed_all = True
            return
        wait = next_at - time.time()
        if time.monotonic() + wait > self._deadline:
            self._fed_all = True  # left deferred for the next run
        elif wait <= 0:
            self._pass_done, self._after = False, 0
        else:
            self._feed_wake = time.monotonic() + wait

    def _take(self, batch: list[Delivery], wanted: int) -> None:
        self.queue.extend(batch)
        if self._pool is not None:
            for d in batch:
                self._built[d.subscriber_id] = self._pool.submit(self._build_now, d)
        if batch:
            self._after = batch[-1].subscriber_id
        if len(batch) < wanted:
            self._pass_done = True

    def _feed_claims(self, live: list[_Link]) -> None:
        """Claims are made ahead by a helper thread on a connection of its own (a
        round trip the engine's thread does not wait for): the next one starts
        while the queue still holds about a claim's worth."""
        if self._claim is not None:
            if not self._claim.done():
                return
            future, self._claim = self._claim, None
            self._take(*future.result())
            if self._pass_done:
                return
        small = CLAIM_PER_LINK * len(live) + 8
        if len(self.queue) < 2 * len(live) + 8 + (small if self._others else self._alone // 2):
            if self._claims is None:
                self._claims = ThreadPoolExecutor(1, "claims")
            self._claim = self._claims.submit(self._claim_now, small, self._after)

    def _claim_now(self, small: int, after: int) -> tuple[list[Delivery], int]:
        """Shared, claims are small to the end (the work stays even). Alone, they
        double from small up to CLAIM_ALONE: a sender started a moment later still
        finds work. Who else sends is looked at before each claim."""
        if self._claim_store is None:
            self._claim_store = Store(self.settings.database, wait=self.settings.db_wait)
        store = self._claim_store
        self._others = self._others_running(store)
        if self._others:
            self._alone = want = small
        else:
            self._alone = want = min(CLAIM_ALONE, max(small, 2 * self._alone))
        return store.claim(self.issue, self.claimer, time.time(), want, after), want

    def close_claims(self) -> None:
        """Wait for a claim in hand (its rows are then released with the rest)."""
        if self._claims is not None:
            self._claims.shutdown(wait=True)
        if self._claim_store is not None:
            self._claim_store.close()

    def _timeout(self, live: list[_Link], now: float) -> float:
        if self._claim is not None and not self.queue:  # a claim is due any moment
            return CLAIM_POLL
        wakes = [k.wake for k in live if k.op in (REPLY, FINAL, SLEEP)]
        if self._hold_until:
            wakes.append(self._hold_until)
        if self._pass_done and not self._fed_all and self._feed_wake > now:
            wakes.append(self._feed_wake)
        return max(0.0, min([now + REPORT_EVERY, *wakes]) - now)

    def _poll(
        self,
        poller: select.poll,
        watched: dict[int, int],
        live: list[_Link],
        book: DeliveryLog,
        timeout: float,
    ) -> bool:
        """Wait up to ``timeout`` for the sockets (and the commit in hand); do the
        reads and writes they are ready for. Whether the commit finished."""
        conns: dict[int, Connection] = {}
        wanted: dict[int, int] = {}
        for link in live:
            conn = link.conn
            if conn is None or conn.fd is None or conn.broken is not None:
                continue
            conns[conn.fd] = conn
            wanted[conn.fd] = select.POLLIN | (select.POLLOUT if conn.pending_output else 0)
        if book.busy:
            wanted[book.fd] = select.POLLIN
        for fd in [fd for fd in watched if fd not in wanted]:
            poller.unregister(fd)
            del watched[fd]
        for fd, mask in wanted.items():
            if watched.get(fd) != mask:
                poller.register(fd, mask)
                watched[fd] = mask
        if not wanted:
            if timeout > 0:
                time.sleep(timeout)
            return False
        finished = False
        for fd, events in poller.poll(timeout * 1000):
            conn = conns.get(fd)
            if conn is None:  # the commit in hand is durable (or failed)
                os.read(fd, 1)
                finished = True
                continue
            if events & select.POLLOUT:
                conn.on_writable()
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                conn.on_readable()
        return finished


def group_complete(live: list[_Link], committing: int) -> bool:
    """Whether no session but those at their point of delivery is about to get
    there: none waits for a reply from a near relay (NEAR). A session waiting for
    work, or sleeping for a rate or a backoff, is not waited for; nor one of a
    farther relay."""
    return committing == len(live) or not any(
        k.op in (REPLY, FINAL) and (k.relay is None or k.relay.fastest < NEAR) for k in live
    )


def reap_gone(store: Store, issue: str, me: str, notes: list[str]) -> int:
    """Senders of ``issue`` that are gone (see ``send.lock``): their in-flight
    messages are in doubt, their claims go back to everyone. Returns how many
    messages became in doubt; ``notes`` says whose."""
    others = store.claimers(issue) - {me}
    if not others:
        return 0
    live = {lease.holder for lease in store.senders() if not gone(lease)}
    total = 0
    for holder in sorted(others - live):
        doubtful = store.reap(issue, holder)
        log.warning("a sender of %s stopped (%s): its messages are taken over", issue, holder)
        if doubtful:
            notes.append(
                f"{doubtful} message(s) in flight at a sender that stopped ({holder}) are in doubt"
            )
        total += doubtful
    return total


def _name(link: _Link) -> str:
    return link.relay.name if link.relay is not None else ""


@contextlib.contextmanager
def _signals_stop(engine: _Engine) -> Generator[None, None, None]:
    """Ctrl-C and SIGTERM stop the run cleanly: no new messages; the ones in flight
    finish. A second one aborts (KeyboardInterrupt)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        if engine.interrupted:
            raise KeyboardInterrupt
        engine.interrupted = True
        engine.halt("interrupted (Ctrl-C)")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


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


def _first_connections(
    relays: list[_Relay], settings: Settings, options: SendOptions
) -> tuple[list[Connection | None], list[str]]:
    """Each relay's first connection, made before anything is written: a wrong
    host, password or certificate is reported at once. With several relays, one
    that cannot be reached is taken out (noted) as long as another can."""
    firsts: list[Connection | None] = []
    notes: list[str] = []
    errors: list[ComposerError] = []
    for relay in relays:
        try:
            firsts.append(
                _first_connection(
                    relay.transport, settings.smtp_connect_attempts, options.connect_backoff
                )
            )
        except (ConnectError, TransportError) as exc:
            if len(relays) == 1:
                raise
            errors.append(exc)
            firsts.append(None)
            relay.out = str(exc)
            notes.append(f"relay {relay.name} taken out: {exc}")
    if all(c is None for c in firsts):
        raise errors[0]
    return firsts, notes


def run_send(
    plan: SendPlan,
    settings: Settings,
    options: SendOptions,
    report: Callable[[Progress], None] | None = None,
) -> SendSummary:
    """Send the planned issue. Ctrl-C (KeyboardInterrupt) stops cleanly."""
    started = time.monotonic()
    relays = [
        _Relay(
            r.name,
            make_transport(r.settings),
            r.connections,
            RateLimiter(r.per_second, r.per_hour),
            r.share,
        )
        for r in load_relays(settings, options.connections)
    ]
    list_name = options.list_name or ""
    templates = message_templates(settings, plan.prepared)
    with (
        SendLock(settings.database, settings.db_wait, issue=plan.issue) as lock,
        Store(settings.database, wait=settings.db_wait) as store,
    ):
        firsts, notes = _first_connections(relays, settings, options)

        def close_firsts() -> None:
            for conn in firsts:
                if conn is not None:
                    conn.close()

        claimer = lock.holder if lock.shared else ""
        reaped_notes: list[str] = []
        try:
            settled = store.settle_interrupted(plan.issue)
            if claimer:
                settled += reap_gone(store, plan.issue, claimer, reaped_notes)
            store.drop_inactive(plan.issue)
            if options.resend_in_doubt:
                store.requeue_in_doubt(plan.issue)
            store.start_send(plan.issue, plan.prepared.digest, plan.subject)
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
            close_firsts()
            raise
        try:
            book = DeliveryLog(settings.database, plan.issue, settings.db_wait)
        except BaseException:
            close_firsts()
            raise
        engine = _Engine(
            settings,
            options,
            templates,
            plan.issue,
            list_name,
            relays,
            total["pending"] + total["deferred"],
            claimer,
        )
        engine.notes.extend(notes + reaped_notes)
        interrupted = False
        try:
            engine.run(firsts, store, book, report, lock.lost)
        except KeyboardInterrupt:  # a second Ctrl-C: in-flight messages are in doubt
            interrupted = True
            engine.halt("interrupted (Ctrl-C)")
        except ComposerError as exc:  # the database, mostly: stop cleanly, never hang
            engine.halt(str(exc), exc)
        finally:
            book.close()
            with contextlib.suppress(ComposerError):
                engine.close_claims()
            log.debug(
                "delivery log: %d records in %d commits (%.2f ms each); replies to the "
                "final '.': %.2f ms on average, the quickest %s",
                book.records,
                book.commits,
                book.seconds / max(book.commits, 1) * 1000,
                engine.final_wait * 1000,
                ", ".join(f"{r.name} {r.fastest * 1000:.2f} ms" for r in engine.relays),
            )
        interrupted = interrupted or engine.interrupted
        if report is not None:
            report(engine.progress)
        with contextlib.suppress(ComposerError):
            if claimer:
                store.release_claims(plan.issue, claimer)
            store.drop_inactive(plan.issue)  # unsubscribed while this run went on
            if engine.requeue:
                store.requeue(plan.issue, engine.requeue)
        if isinstance(engine.error, TransportError):  # credentials, certificate, ...
            raise engine.error
        try:
            counts = store.counts(plan.issue)
            sent_by_edition = by_edition(plan.prepared, store.sent_languages(plan.issue))
        except ComposerError:
            sent_by_edition = {}
            counts = dict.fromkeys(
                ("pending", "sending", "sent", "deferred", "failed", "in_doubt"), 0
            )
        left = (
            engine.progress.in_doubt + engine.reaped + (0 if options.resend_in_doubt else settled)
        )
        return SendSummary(
            progress=engine.progress,
            elapsed=time.monotonic() - started,
            counts=counts,
            stopped=engine.reason,
            interrupted=interrupted,
            settled_in_doubt=settled,
            in_doubt_left=left,
            sent_by_edition=sent_by_edition,
            notes=engine.notes,
        )
