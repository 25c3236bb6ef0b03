"""Someone who unsubscribes while a send is running gets nothing more from it:
the running send looks for such changes every half second and drops them from
what it has queued."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from composer.audience.tokens import sign
from tests.helpers import pairs, run
from tests.send.test_send import add_subscribers, counts, use
from tests.servers import newsletter_server
from tests.smtp_server import Handler, running


def test_an_unsubscribe_on_the_web_during_a_send_stops_mail_to_that_person(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    addresses = add_subscribers(80)
    ids = pairs(newsletter_home, "SELECT email, id FROM subscribers")
    leaving = addresses[40]  # queued long before its turn (the queue reads 500 at a time)
    handler = Handler(delay=0.04)  # one connection: about 25 messages a second
    with running(handler) as server:
        use(monkeypatch, server.env())
        with newsletter_server(newsletter_home, "serve") as port:

            def unsubscribe_midway() -> None:
                while len(handler.received) < 10:
                    time.sleep(0.005)
                token = sign("test-secret-key", ids[leaving], "")
                r = httpx.post(
                    f"http://127.0.0.1:{port}/unsubscribe/{token}",
                    data={"List-Unsubscribe": "One-Click"},
                )
                assert r.status_code == 200

            web = threading.Thread(target=unsubscribe_midway)
            web.start()
            result = run("send", "2025-04-16", "--yes", "--connections", "1")
            web.join()
    assert result.exit_code == 0, result.output
    received = handler.recipients()
    assert leaving not in received  # 30 messages (over a second) later: dropped
    assert sorted(received) == sorted(a for a in addresses if a != leaving)
    assert counts(newsletter_home) == {"sent": 79}
