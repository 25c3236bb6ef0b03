"""Sign-up's parts on their own: signed claims, the form's checks, the client
address behind proxies, the settings, and the limits held by the database
when two servers reach it at once."""

from __future__ import annotations

import ipaddress
import multiprocessing
import time
from pathlib import Path

import pytest

from composer.audience import signup
from composer.audience.tokens import sign, sign_claim, verify, verify_claim
from composer.config import load_settings
from composer.errors import ConfigError
from composer.store.database import Store
from composer.store.signups import Request, Signups
from composer.web.app import client_address


def test_a_claim_is_good_for_its_own_purpose_only() -> None:
    token = sign_claim("k", "confirm", "12", "1900000000")
    assert verify_claim("k", "confirm", token) == ["12", "1900000000"]
    assert verify_claim(["new", "k"], "confirm", token) == ["12", "1900000000"]
    assert verify_claim("k", "form", token) is None
    assert verify_claim("other", "confirm", token) is None
    assert verify("k", token) is None  # not an unsubscribe token
    assert verify_claim("k", "confirm", sign("k", 12, "")) is None
    body, mac = token.split(".")
    assert verify_claim("k", "confirm", body + "=." + mac) is None  # not canonical
    other = "B" if body[0] != "B" else "C"
    assert verify_claim("k", "confirm", other + body[1:] + "." + mac) is None
    with pytest.raises(ValueError):
        sign_claim("k", "confirm", "a:b")


def _edition(language: str) -> str:
    return "es" if language.startswith("es") else "en-GB"


LISTS = ("weekly", "jobs")


def judge_kind(settings: object, posted: signup.Posted, now: float) -> str:
    return signup.judge(settings, posted, _edition, LISTS, now).kind  # type: ignore[arg-type]


def _posted(**fields: object) -> signup.Posted:
    return signup.Posted.read(fields)


def test_the_form_is_judged_without_looking_at_who_subscribes(newsletter_home: Path) -> None:
    settings = load_settings(newsletter_home, {"NEWSLETTER_SECRET_KEY": "k"})
    now = time.time()
    shown = signup.form_token(settings, now - 10)
    ok = signup.judge(
        settings,
        _posted(email=" Ana@Example.ORG ", name="Ana\r\nBcc: x", lists=["jobs", "x"], t=shown),
        _edition,
        LISTS,
        now,
    )
    assert (ok.kind, ok.email, ok.lists) == (signup.ACCEPT, "ana@example.org", ("jobs",))
    assert "\n" not in ok.name and ok.language == "en-GB"
    spanish = signup.judge(
        settings, _posted(email="a@b.org", language="es-MX", t=shown), _edition, LISTS, now
    )
    assert spanish.language == "es"
    too_fast = signup.form_token(settings, now - 1)
    assert judge_kind(settings, _posted(email="a@b.org", t=too_fast), now) == "drop"
    stale = signup.form_token(settings, now - 2 * 86400)
    assert judge_kind(settings, _posted(email="a@b.org", t=stale), now) == "drop"
    bot = _posted(email="a@b.org", t=shown, website="http://spam")
    assert judge_kind(settings, bot, now) == "drop"
    assert judge_kind(settings, _posted(email="a@b.org"), now) == "again"
    assert judge_kind(settings, _posted(email="nope", t=shown), now) == "invalid"
    # Fields of the wrong shape (JSON numbers, lists, objects) are not a crash.
    odd = signup.Posted.read({"email": ["a@b.org"], "name": 5, "lists": "jobs", "t": {}})
    assert (odd.email, odd.name, odd.lists, odd.token) == ("a@b.org", "", ("jobs",), "")


@pytest.mark.parametrize(
    ("peer", "header", "proxies", "client"),
    [
        ("127.0.0.1", "203.0.113.9", "", "127.0.0.1"),  # no proxy configured
        ("198.51.100.2", "203.0.113.9", "127.0.0.1", "198.51.100.2"),  # not from the proxy
        ("127.0.0.1", "203.0.113.9", "127.0.0.1", "203.0.113.9"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.9", "127.0.0.1", "203.0.113.9"),  # left is forged
        ("10.0.0.5", "203.0.113.9, 10.0.0.7", "10.0.0.0/8", "203.0.113.9"),  # two proxies
        ("127.0.0.1", "not-an-ip", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1", "127.0.0.1"),
        ("::1", "2001:db8::1", "::1", "2001:db8::1"),
    ],
)
def test_x_forwarded_for_is_read_from_the_right_and_only_from_our_proxies(
    peer: str, header: str, proxies: str, client: str
) -> None:
    nets = tuple(ipaddress.ip_network(p) for p in proxies.split(",") if p)
    assert client_address(peer, header, nets) == client


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("NEWSLETTER_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "'proxy.local' is not an IP"),
        ("NEWSLETTER_SIGNUP_LISTS", "weekly,a<b", "'a<b' is not a list name"),
        ("NEWSLETTER_WELCOME_MAIL", "maybe", "must be on or off"),
        ("TRANSACTIONAL_SMTP_SECURITY", "tls", "is not one of"),
        ("NEWSLETTER_SIGNUP_PER_IP_HOUR", "five", "is not a whole number"),
    ],
)
def test_bad_sign_up_settings_are_one_clear_error(
    newsletter_home: Path, name: str, value: str, says: str
) -> None:
    env = {name: value, "TRANSACTIONAL_SMTP_HOST": "127.0.0.1"}
    with pytest.raises(ConfigError, match=says):
        load_settings(newsletter_home, env)


def _request(email: str, ip: str = "192.0.2.1") -> Request:
    return Request(email, "", "en", [], [], "consent", ip, "ua", "page")


def test_limits_per_client_and_per_address(tmp_path: Path) -> None:
    with Store(tmp_path / "n.db") as store:
        signups = Signups(store)
        now = 1_000_000.0
        assert signups.request(_request("a@x.org"), 5, 10, now) is not None
        assert signups.request(_request("a@x.org", "192.0.2.2"), 5, 10, now + 60) is None
        assert signups.request(_request("a@x.org", "192.0.2.2"), 5, 10, now + 601) is not None
        made = [signups.request(_request(f"u{i}@x.org"), 5, 10, now + i) for i in range(10)]
        assert sum(m is not None for m in made) == 4  # 5 an hour from 192.0.2.1
        assert signups.request(_request("late@x.org"), 5, 10, now + 3601) is not None


def _flood(path: str, start: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with Store(Path(path)) as store:
        signups = Signups(store)
        made = 0
        for i in range(start, start + 50):
            made += signups.request(_request(f"p{i}@x.org"), 5, 10) is not None
    results.put(made)


def test_two_servers_on_one_database_cannot_pass_the_limit_together(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    Store(path).close()
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_flood, args=(str(path), n * 100, results)) for n in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sum(results.get(timeout=5) for _ in procs) == 5


def test_the_transactional_relays_password_never_prints(newsletter_home: Path) -> None:
    settings = load_settings(
        newsletter_home,
        {"TRANSACTIONAL_SMTP_HOST": "relay.example.net", "TRANSACTIONAL_SMTP_PASSWORD": "hunter2"},
    )
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.transactional())
    relay = settings.transactional()
    assert (relay.smtp_host, relay.smtp_port, relay.smtp_password.get()) == (
        "relay.example.net",
        587,
        "hunter2",
    )
