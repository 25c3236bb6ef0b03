"""The delivery log's group writes, on either backend (the PostgreSQL run writes
through array literals made by hand: quotes, backslashes and NUL must survive or
be dropped, never break the statement)."""

from __future__ import annotations

from pathlib import Path

from composer.store.database import Store
from composer.store.delivery_log import DeliveryLog
from tests.helpers import database_target, pairs
from tests.send.test_send import add_subscribers


def test_a_group_records_outcomes_and_starts_whatever_the_replies_say(
    newsletter_home: Path,
) -> None:
    add_subscribers(4)
    target = database_target(newsletter_home)
    with Store(target) as store:
        store.start_send("2025-04-16", "digest", "subject")
        store.enqueue("2025-04-16", None, None)
    book = DeliveryLog(target, "2025-04-16")
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
