"""Sign-up with double opt-in on the real `newsletter serve`, mailing through a
real SMTP server on loopback: the same answer for everyone, nothing subscribed
before the confirmation button, bots and floods stopped, consent on record."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest

from composer.audience.tokens import sign, sign_claim
from tests.helpers import Database, run
from tests.servers import newsletter_server
from tests.smtp_server import Handler, Received, running

LINK_RE = re.compile(r"<(http://127\.0\.0\.1:\d+/confirm/[^>\s]+)>")


def rows(home: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = Database(home)
    try:
        return list(db.execute(sql, args).fetchall())
    finally:
        db.close()


def wait_for(handler: Handler, n: int, timeout: float = 10.0) -> list[Received]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with handler.lock:
            if len(handler.received) >= n:
                return list(handler.received)
        time.sleep(0.02)
    with handler.lock:
        return list(handler.received)


def link_in(message: Received) -> str:
    text = message.message().get_body(("plain",))
    assert text is not None
    found = LINK_RE.search(text.get_content())
    assert found, text.get_content()
    return found.group(1)


@contextlib.contextmanager
def signup_server(home: Path, **env: str) -> Iterator[tuple[httpx.Client, Handler]]:
    handler = Handler()
    with running(handler) as smtp:
        settings = {
            **smtp.env(),
            "NEWSLETTER_FROM": "Weekly Update <news@example.org>",
            "NEWSLETTER_SIGNUP_MIN_SECONDS": "0",
            "NEWSLETTER_SIGNUP_LISTS": "weekly,jobs",
            **env,
        }
        with (
            newsletter_server(home, "serve", env_extra=settings) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            yield client, handler


def form_token(client: httpx.Client) -> str:
    page = client.get("/subscribe").text
    found = re.search(r'name="t" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_a_sign_up_is_pending_until_the_button_of_the_link_is_pressed(
    newsletter_home: Path,
) -> None:
    with signup_server(newsletter_home) as (client, handler):
        page = client.get("/subscribe")
        assert page.status_code == 200
        assert '<label for="email">Email address</label>' in page.text
        assert "I agree to receive Weekly Update by email." in page.text
        posted = client.post(
            "/subscribe",
            data={
                "email": "Ana@Example.org",
                "name": "Ana",
                "lists": ["jobs", "not-offered"],
                "t": form_token(client),
                "page": "https://example.org/join",
            },
            headers={"user-agent": "TestBrowser/1.0"},
        )
        assert posted.status_code == 200 and "Check your inbox" in posted.text
        (mail,) = wait_for(handler, 1)
        # Nobody is a subscriber yet: the sign-up is only a record.
        assert rows(newsletter_home, "SELECT count(*) FROM subscribers") == [(0,)]
        message = mail.message()
        assert mail.rcpt_tos == ["ana@example.org"]
        assert message["Subject"] == "Confirm your subscription"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Unsubscribe"] is None
        link = link_in(mail)
        html = message.get_body(("html",))
        assert html is not None and link.replace("&", "&amp;") in html.get_content()
        # A GET (a mail scanner following the link) changes nothing.
        for _ in range(3):
            shown = client.get(link)
            assert shown.status_code == 200 and "Yes, subscribe me" in shown.text
            assert "ana@example.org" in shown.text
        assert rows(newsletter_home, "SELECT count(*) FROM subscribers") == [(0,)]
        confirmed = client.post(link)
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
        again = client.post(link)  # harmless
        assert again.status_code == 200 and "You are subscribed" in again.text
    assert rows(newsletter_home, "SELECT email, name, status FROM subscribers") == [
        ("ana@example.org", "Ana", "active")
    ]
    assert rows(
        newsletter_home,
        "SELECT l.name FROM memberships m JOIN lists l ON l.id = m.list_id",
    ) == [("jobs",)]
    ((ip, agent, page_url, consent, shown, confirmed_at, confirmed_ip),) = rows(
        newsletter_home,
        "SELECT ip, user_agent, page, consent_text, lists_shown, confirmed_at, confirmed_ip "
        "FROM signups",
    )
    assert (ip, agent, page_url, confirmed_ip) == (
        "127.0.0.1",
        "TestBrowser/1.0",
        "https://example.org/join",
        "127.0.0.1",
    )
    assert consent.startswith("I agree to receive Weekly Update by email.")
    assert shown == '["weekly", "jobs"]' and confirmed_at


def test_everyone_gets_the_same_answer_whatever_the_address_is(newsletter_home: Path) -> None:
    run("subscribers", "add", "active@example.org")
    run("subscribers", "add", "gone@example.org")
    run("subscribers", "unsubscribe", "gone@example.org")
    with signup_server(newsletter_home, NEWSLETTER_SIGNUP_PER_IP_HOUR="100") as (client, _):
        token = form_token(client)
        answers = set()
        for email in (
            "new@example.org",
            "new@example.org",  # pending, within the address's 10 minutes
            "active@example.org",
            "gone@example.org",
        ):
            r = client.post("/subscribe", data={"email": email, "t": token})
            answers.add((r.status_code, r.text))
        honeypot = client.post(
            "/subscribe", data={"email": "bot@example.org", "t": token, "website": "x"}
        )
        answers.add((honeypot.status_code, honeypot.text))
        as_json = {
            client.post("/subscribe", json={"email": e, "t": token}).text
            for e in ("new2@example.org", "active@example.org")
        }
    assert len(answers) == 1 and len(as_json) == 1
    # The unsubscribed address is still unsubscribed: only the link brings it back.
    assert rows(
        newsletter_home, "SELECT status FROM subscribers WHERE email = ?", ("gone@example.org",)
    ) == [("unsubscribed",)]


def test_a_flood_from_one_address_gets_at_most_five_mails_and_bots_none(
    newsletter_home: Path,
) -> None:
    with signup_server(newsletter_home, NEWSLETTER_SIGNUP_MIN_SECONDS="2") as (client, handler):
        fresh = form_token(client)
        fast = [
            client.post("/subscribe", data={"email": f"fast{i}@example.org", "t": fresh})
            for i in range(20)
        ]
        bots = [
            client.post(
                "/subscribe",
                data={"email": f"bot{i}@example.org", "t": fresh, "website": "https://spam"},
            )
            for i in range(20)
        ]
        forged = client.post(
            "/subscribe", data={"email": "forged@example.org", "t": fresh[:-2] + "AA"}
        )
        time.sleep(2.1)
        flood = [
            client.post("/subscribe", data={"email": f"user{i}@example.org", "t": fresh})
            for i in range(1000)
        ]
        time.sleep(1.0)
        received = wait_for(handler, 5)
    answers = {(r.status_code, r.text) for r in [*fast, *bots, forged, *flood]}
    assert len(answers) == 1  # too fast, bots, forged and real: one answer
    assert len(received) == 5
    assert {r.rcpt_tos[0] for r in received} == {f"user{i}@example.org" for i in range(5)}
    assert rows(newsletter_home, "SELECT count(*) FROM signups") == [(5,)]


def test_a_form_posted_from_another_site_is_shown_again_to_send_once_more(
    newsletter_home: Path,
) -> None:
    with signup_server(newsletter_home) as (client, handler):
        r = client.post(
            "/subscribe", data={"email": "ana@example.org", "name": "Ana", "lists": "weekly"}
        )
        assert r.status_code == 200 and "One more step" in r.text
        assert 'value="ana@example.org"' in r.text and 'value="weekly" checked' in r.text
        assert not wait_for(handler, 1, timeout=0.5)
        bad = client.post("/subscribe", data={"email": "not an address", "t": form_token(client)})
        assert bad.status_code == 400 and "Please enter a valid email address." in bad.text
        bad_json = client.post("/subscribe", json={"email": "nope"})
        assert bad_json.status_code == 400 and bad_json.json()["field"] == "email"
        no_token = client.post("/subscribe", json={"email": "ana@example.org"})
        assert no_token.status_code == 400 and no_token.json()["field"] == "t"
        # What a browser asks before a script on another site posts JSON (CORS).
        preflight = client.options(
            "/subscribe",
            headers={"origin": "https://example.org", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "content-type" in preflight.headers["access-control-allow-headers"]
        token = client.get("/subscribe/token").json()["t"]
        ok = client.post("/subscribe", json={"email": "ana@example.org", "t": token})
        assert ok.json()["status"] == "ok" and ok.headers["access-control-allow-origin"] == "*"
        assert len(wait_for(handler, 1)) == 1


def test_confirmation_links_expire_and_cannot_be_forged(newsletter_home: Path) -> None:
    with signup_server(newsletter_home) as (client, handler):
        client.post("/subscribe", data={"email": "ana@example.org", "t": form_token(client)})
        link = link_in(wait_for(handler, 1)[0])
        token = link.rsplit("/", 1)[1]
        expired = sign_claim("test-secret-key", "confirm", "1", str(int(time.time()) - 1))
        unsubscribe_kind = sign("test-secret-key", 1, "")  # another purpose's token
        for bad in (expired, unsubscribe_kind, token[:-3] + "abc", "x" * 600):
            assert client.get(f"/confirm/{bad}").status_code == 400
            r = client.post(f"/confirm/{bad}")
            assert r.status_code == 400 and "not valid or has expired" in r.text
        assert rows(newsletter_home, "SELECT count(*) FROM subscribers") == [(0,)]


def test_an_unsubscribed_address_comes_back_only_by_confirming(newsletter_home: Path) -> None:
    run("subscribers", "add", "ana@example.org")
    run("subscribers", "unsubscribe", "ana@example.org")
    run("subscribers", "import", "-", input="email\nana@example.org\n")
    assert rows(newsletter_home, "SELECT status FROM subscribers") == [("unsubscribed",)]
    with signup_server(newsletter_home) as (client, handler):
        client.post("/subscribe", data={"email": "ana@example.org", "t": form_token(client)})
        client.post(link_in(wait_for(handler, 1)[0]))
    assert rows(newsletter_home, "SELECT status FROM subscribers") == [("active",)]
    events = rows(newsletter_home, "SELECT kind, detail FROM events ORDER BY id")
    assert events[-1][0] == "active" and events[-1][1].startswith("confirmed sign-up")


def test_consent_is_kept_after_unsubscribing_exported_and_removed_with_the_subscriber(
    newsletter_home: Path,
) -> None:
    with signup_server(newsletter_home) as (client, handler):
        client.post(
            "/subscribe",
            data={"email": "ana@example.org", "lists": "weekly", "t": form_token(client)},
            headers={"user-agent": "Firefox"},
        )
        client.post(link_in(wait_for(handler, 1)[0]))
        sid = rows(newsletter_home, "SELECT id FROM subscribers")[0][0]
        unsubscribe = sign("test-secret-key", sid, "")
        client.post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert rows(newsletter_home, "SELECT status FROM subscribers") == [("unsubscribed",)]
    result = run("subscribers", "export", "--consent")
    assert result.exit_code == 0, result.output
    (record,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert record["email"] == "ana@example.org" and record["user_agent"] == "Firefox"
    assert record["lists_shown"] == "weekly, jobs" and record["lists_chosen"] == "weekly"
    assert record["consent_text"].startswith("I agree to receive")
    assert record["confirmed_at"] and record["subscriber_status"] == "unsubscribed"
    assert run("subscribers", "remove", "ana@example.org").exit_code == 0
    assert rows(newsletter_home, "SELECT count(*) FROM signups") == [(0,)]


def test_the_preferences_page_changes_lists_edition_and_name_and_records_it(
    newsletter_home: Path,
) -> None:
    run("subscribers", "add", "ana@example.org", "--name", "Ana", "--list", "weekly")
    sid = rows(newsletter_home, "SELECT id FROM subscribers")[0][0]
    token = sign("test-secret-key", sid, "")
    with signup_server(newsletter_home) as (client, _):
        page = client.get(f"/preferences/{token}")
        assert page.status_code == 200 and "Your preferences" in page.text
        assert 'value="weekly" checked' in page.text and 'value="jobs">' in page.text
        assert rows(newsletter_home, "SELECT count(*) FROM signups") == [(0,)]
        saved = client.post(
            f"/preferences/{token}", data={"name": "Ana B", "lists": "jobs", "language": "en"}
        )
        assert saved.status_code == 200 and "Your preferences are saved." in saved.text
        assert client.get("/preferences/forged.token").status_code == 400
    assert rows(newsletter_home, "SELECT name FROM subscribers") == [("Ana B",)]
    assert rows(
        newsletter_home, "SELECT l.name FROM memberships m JOIN lists l ON l.id = m.list_id"
    ) == [("jobs",)]
    assert rows(newsletter_home, "SELECT kind, lists, ip FROM signups") == [
        ("preferences", '["jobs"]', "127.0.0.1")
    ]


def test_every_issue_links_to_the_preferences_page(newsletter_home: Path) -> None:
    run("subscribers", "add", "ana@example.org")
    assert run("send", "2025-04-16", "--yes").exit_code == 0
    (path,) = (newsletter_home / "outbox" / "new").iterdir()
    raw = path.read_text()
    token = sign("test-secret-key", 1, "")
    assert f"http://127.0.0.1:8000/preferences/{token}" in raw


def test_x_forwarded_for_is_believed_only_from_a_configured_proxy(newsletter_home: Path) -> None:
    spoof = {"x-forwarded-for": "203.0.113.9"}
    with signup_server(newsletter_home) as (client, handler):
        client.post(
            "/subscribe", data={"email": "a@example.org", "t": form_token(client)}, headers=spoof
        )
        wait_for(handler, 1)
    with signup_server(newsletter_home, NEWSLETTER_TRUSTED_PROXIES="127.0.0.1") as (
        client,
        handler,
    ):
        client.post(
            "/subscribe",
            data={"email": "b@example.org", "t": form_token(client)},
            headers={"x-forwarded-for": "198.51.100.1, 203.0.113.7"},
        )
        wait_for(handler, 1)
    assert rows(newsletter_home, "SELECT email, ip FROM signups ORDER BY id") == [
        ("a@example.org", "127.0.0.1"),
        ("b@example.org", "203.0.113.7"),
    ]


def test_the_confirmation_mail_speaks_the_chosen_language_and_is_signed(
    newsletter_home: Path,
) -> None:
    from tests.helpers import bilingual_seed

    bilingual_seed(newsletter_home)
    key = run("dkim", "keygen", "--selector", "s1")
    assert key.exit_code == 0, key.output
    found = re.search(r"IN TXT (.*)$", key.stdout, re.M)
    assert found, key.stdout
    record = "".join(re.findall(r'"([^"]*)"', found.group(1)))
    env = {
        "DKIM_SELECTOR": "s1",
        "DKIM_PRIVATE_KEY": str(newsletter_home / "dkim" / "s1.rsa.pem"),
    }
    with signup_server(newsletter_home, **env) as (client, handler):
        page = client.get("/subscribe?lang=es")
        assert 'lang="es"' in page.text and "Correo electrónico" in page.text
        client.post(
            "/subscribe",
            data={"email": "ana@example.org", "language": "es-MX", "t": form_token(client)},
        )
        (mail,) = wait_for(handler, 1)
    message = mail.message()
    assert message["Subject"] == "Confirme su suscripción"
    assert message["Content-Language"] == "es"

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return record.encode()

    assert dkim.verify(mail.content, dnsfunc=lookup)
    assert rows(newsletter_home, "SELECT language FROM signups") == [("es",)]


@pytest.mark.parametrize("field", ["email", "name"])
def test_a_huge_post_is_refused_before_it_is_read(newsletter_home: Path, field: str) -> None:
    with signup_server(newsletter_home) as (client, handler):
        r = client.post("/subscribe", data={field: "x" * 20000, "t": form_token(client)})
        assert r.status_code == 413
    assert not handler.received


def test_a_sign_up_recorded_before_a_crash_is_mailed_when_the_server_is_back(
    newsletter_home: Path,
) -> None:
    """kill -9 while the relay is down: the sign-up is in the database, and the
    restarted server mails it."""
    import os
    import signal

    from tests.smtp_server import free_port

    port = free_port()  # nothing listens there yet
    down = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": "2",
        "SMTP_CONNECT_ATTEMPTS": "1",
        "NEWSLETTER_ALLOW_TEST_SETUP": "1",
        "NEWSLETTER_SIGNUP_MIN_SECONDS": "0",
    }
    info: dict[str, Any] = {}
    with newsletter_server(newsletter_home, "serve", env_extra=down, info=info) as web:
        with httpx.Client(base_url=f"http://127.0.0.1:{web}", timeout=10) as client:
            answer = client.post(
                "/subscribe", data={"email": "ana@example.org", "t": form_token(client)}
            )
            assert answer.status_code == 200
        time.sleep(0.5)
        os.kill(info["pid"], signal.SIGKILL)
    assert rows(newsletter_home, "SELECT mail_state FROM signups") == [("queued",)]
    handler = Handler()
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        with newsletter_server(newsletter_home, "serve", env_extra=down):
            (mail,) = wait_for(handler, 1)
            assert mail.rcpt_tos == ["ana@example.org"]
            deadline = time.monotonic() + 5
            while rows(newsletter_home, "SELECT mail_state FROM signups") != [("sent",)]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        controller.stop()


def test_sign_up_mails_can_go_through_a_relay_of_their_own_and_a_welcome_follows(
    newsletter_home: Path,
) -> None:
    own = Handler()
    with running(own) as transactional:
        env = {
            "TRANSACTIONAL_SMTP_HOST": "127.0.0.1",
            "TRANSACTIONAL_SMTP_PORT": str(transactional.port),
            "TRANSACTIONAL_SMTP_SECURITY": "none",
            "NEWSLETTER_WELCOME_MAIL": "on",
        }
        with signup_server(newsletter_home, **env) as (client, bulk):
            client.post("/subscribe", data={"email": "ana@example.org", "t": form_token(client)})
            (confirmation,) = wait_for(own, 1)
            client.post(link_in(confirmation))
            client.post(link_in(confirmation))  # twice: still one welcome
            received = wait_for(own, 2)
            time.sleep(0.3)
            assert not bulk.received
    welcome = received[1].message()
    assert welcome["Subject"] == "Welcome to Weekly Update" and len(own.received) == 2
    text = welcome.get_body(("plain",))
    assert text is not None and "/preferences/" in text.get_content()


def test_a_relay_that_defers_gets_the_mail_again_and_one_that_refuses_stops_nothing_else(
    newsletter_home: Path,
) -> None:
    handler = Handler(faults={"later@example.org": ["451", "ok"], "never@example.org": ["550"]})
    with running(handler) as smtp:
        env = {**smtp.env(), "NEWSLETTER_SIGNUP_MIN_SECONDS": "0"}
        with (
            newsletter_server(newsletter_home, "serve", env_extra=env) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            token = form_token(client)
            for email in ("never@example.org", "later@example.org", "ok@example.org"):
                client.post("/subscribe", data={"email": email, "t": token})
            received = wait_for(handler, 2, timeout=15)
    assert sorted(m.rcpt_tos[0] for m in received) == ["later@example.org", "ok@example.org"]
    states = dict(rows(newsletter_home, "SELECT email, mail_state FROM signups"))
    assert states == {
        "never@example.org": "failed",
        "later@example.org": "sent",
        "ok@example.org": "sent",
    }


def test_a_dropped_post_is_answered_in_the_language_a_real_one_would_be(
    newsletter_home: Path,
) -> None:
    from tests.helpers import bilingual_seed

    bilingual_seed(newsletter_home)
    with signup_server(newsletter_home, NEWSLETTER_SIGNUP_MIN_SECONDS="1") as (client, _):
        fresh = form_token(client)
        too_fast = client.post(
            "/subscribe", data={"email": "a@example.org", "language": "es", "t": fresh}
        )
        time.sleep(1.1)
        real = client.post(
            "/subscribe", data={"email": "b@example.org", "language": "es", "t": fresh}
        )
        bot = client.post(
            "/subscribe",
            data={"email": "c@example.org", "language": "es", "t": fresh, "website": "x"},
        )
    assert too_fast.text == real.text == bot.text and "Revise su bandeja de entrada" in real.text


def test_exports_keep_formula_like_names_from_the_form_as_text(newsletter_home: Path) -> None:
    """A spreadsheet opening the export must not run what an anonymous form said."""
    with signup_server(newsletter_home) as (client, handler):
        client.post(
            "/subscribe",
            data={
                "email": "x@example.org",
                "name": '=HYPERLINK("http://evil")',
                "t": form_token(client),
            },
            headers={"user-agent": "@SUM(1+1)", "referer": "-2+3"},
        )
        client.post(link_in(wait_for(handler, 1)[0]))
    (row,) = list(csv.DictReader(io.StringIO(run("subscribers", "export").stdout)))
    assert row["name"] == '\'=HYPERLINK("http://evil")' and row["email"] == "x@example.org"
    (consent,) = list(csv.DictReader(io.StringIO(run("subscribers", "export", "--consent").stdout)))
    assert consent["user_agent"] == "'@SUM(1+1)" and consent["name"].startswith("'=")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"email=\xff\xfe%ZZ&t=\x00", "application/x-www-form-urlencoded"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b'["email", "a@example.org"]', "application/json"),
        (b'{"email": {"$ne": 1}, "lists": {"a": 1}, "t": 5, "name": null}', "application/json"),
        (b"not json at all", "application/json"),
        ("&".join(f"f{i}=x" for i in range(500)).encode(), "application/x-www-form-urlencoded"),
        (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.exe"\r\n\r\nMZ\r\n--b--',
            "multipart/form-data; boundary=b",
        ),
        (b"email=a%40example.org", "text/plain"),
    ],
)
def test_hostile_sign_up_bodies_get_an_answer_never_a_crash(
    newsletter_home: Path, body: bytes, content_type: str
) -> None:
    with signup_server(newsletter_home) as (client, handler):
        for path in ("/subscribe", f"/preferences/{sign('test-secret-key', 1, '')}"):
            r = client.post(path, content=body, headers={"content-type": content_type})
            assert r.status_code in (200, 400, 413), (path, r.status_code, r.text[:200])
            assert "Traceback" not in r.text and "Internal Server Error" not in r.text
        assert client.get("/subscribe").status_code == 200  # still serving
    assert not handler.received
