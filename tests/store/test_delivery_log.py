"""The delivery log's group writes, on either backend (the PostgreSQL run writes
through array literals made by hand: quotes, backslashes and NUL must survive or
be dropped, never break the statement)."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.store.database import Store
from composer.store.delivery_log import DeliveryLog
from tests.helpers import Database, database_target, pairs
from tests.send.test_send import add_subscribers


def _log(home: Path, subscribers: int) -> DeliveryLog:
    """The log of a send of the seed issue to ``subscribers`` new subscribers."""
    add_subscribers(subscribers)
    target = database_target(home)
    with Store(target) as store:
        store.start_send("2025-04-16", "digest", "subject")
        store.enqueue("2025-04-16", None, None)
    return DeliveryLog(target, "2025-04-16")


def test_a_group_records_outcomes_and_starts_whatever_the_replies_say(
    newsletter_home: Path,
) -> None:
    book = _log(newsletter_home, 4)
    try:
        odd = '550 5.1.1 <a"b\\c>, {x} \x00NUL \u00e9'
        book.commit([(None, 1, "r1"), (None, 2, "r2")])
        book.commit(
            [
                ((1, "failed", odd, 1, 0.0, "bounced"), 3, "r1"),
                ((2, "deferred", "451 later", 1, 1.7e9 + 0.25, None), None, ""),
            ]
        )
    finally:
        book.close()
    states = pairs(newsletter_home, "SELECT subscriber_id, state FROM deliveries")
    assert states == {1: "failed", 2: "deferred", 3: "sending", 4: "pending"}
    replies = pairs(newsletter_home, "SELECT subscriber_id, reply FROM deliveries")
    assert replies[1] in (odd, odd.replace("\x00", ""))  # PostgreSQL's text holds no NUL
    assert (
        pairs(newsletter_home, "SELECT subscriber_id, next_attempt_at FROM deliveries")[2]
        == 1.7e9 + 0.25
    )
    assert pairs(newsletter_home, "SELECT subscriber_id, relay FROM deliveries")[3] == "r1"
    assert pairs(newsletter_home, "SELECT id, status FROM subscribers")[1] == "bounced"


@pytest.mark.parametrize("here", [False, True], ids=["helper", "caller"])
def test_an_outcome_and_a_restart_of_one_message_in_one_group_keep_their_order(
    newsletter_home: Path, here: bool
) -> None:
    """On the helper thread, or on the caller's (the engine's, for a far relay)."""
    book = _log(newsletter_home, 3)
    odd = '250 2.0.0 "ok" \\ {queued}, as NULL \x00'
    try:
        book.commit([(None, 1, "r1"), (None, 2, "r2")])
        # 1 is deferred and at once started again on the same connection; 2 is sent
        # with a reply full of what array literals quote.
        book.commit(
            [
                ((1, "deferred", "451 4.3.0 later", 1, 0.0, None), 1, "r3"),
                ((2, "sent", odd, 1, 0.0, None), 3, "r2"),
            ],
            here=here,
        )
    finally:
        book.close()
    rows = {r[0]: r[1:] for r in _rows(newsletter_home)}
    assert rows[1] == ("sending", "451 4.3.0 later", 1, "r3")
    assert rows[2][0] == "sent" and rows[2][1] in (odd, odd.replace("\x00", ""))
    assert rows[2][2:] == (1, "r2")
    assert rows[3] == ("sending", "", 0, "r2")


def _rows(home: Path) -> list[tuple[object, ...]]:
    with Database(home) as db:
        return [
            tuple(r)
            for r in db.execute(
                "SELECT subscriber_id, state, reply, attempts, relay FROM deliveries"
            ).fetchall()
        ]
