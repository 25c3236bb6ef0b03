"""``serve``'s sign-up, confirmation and preferences pages.

- ``GET /subscribe``: the form (email, name, the lists and languages offered,
  the consent text). ``POST /subscribe`` (a form, or JSON): always the same
  answer; see ``audience.signup``. ``GET /subscribe/token``: a form timestamp
  for a form built elsewhere with JavaScript.
- ``GET /confirm/{token}``: a page with a button, and nothing else: mail
  scanners open links. Only ``POST /confirm/{token}`` (that button) confirms.
- ``GET /preferences/{token}`` (the link in every issue, signed like the
  unsubscribe link): lists, edition, name; ``POST`` saves them, recorded like
  a consent. Unsubscribing goes to the one-click endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from composer.audience import signup
from composer.audience.tokens import sign, verify, verify_claim
from composer.config import Settings
from composer.errors import ConfigError, IssueError
from composer.issue.editions import choose, direction
from composer.issue.files import issue_files
from composer.issue.load import LoadedIssue, load_issue
from composer.issue.model import Newsletter
from composer.mail.message import clean
from composer.render.i18n import Words, language_name
from composer.send.transactional import CONFIRM, Mailer, Welcome
from composer.store.database import Store, Subscriber
from composer.store.signups import Request as SignupRequest
from composer.store.signups import Signups

log = logging.getLogger("composer.signup")

_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "static")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _page(words: Words, title: str, status: int = 200, **parts: Any) -> HTMLResponse:
    values: dict[str, Any] = {
        "paragraphs": (),
        "error": None,
        "form": None,
        "button": None,
        "link": None,
        "honeypot": signup.HONEYPOT,
    }
    values.update(parts)
    html = _PAGES.get_template("signup.html").render(
        title=title, lang=words.language, dir=direction(words.language), w=words, **values
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


@dataclass(frozen=True)
class Offer:
    """What the sign-up form offers: the newsletter (from its newest issue file),
    its lists and its editions' languages (the main one first)."""

    newsletter: Newsletter
    lists: tuple[str, ...]
    languages: tuple[str, ...]

    @property
    def main(self) -> str:
        return self.languages[0]

    def edition(self, language: str) -> str:
        """The edition a reader of ``language`` gets (``es-MX`` -> ``es``)."""
        return choose(language, self.languages, self.main) if language else self.main

    def words(self, language: str) -> Words:
        return Words(self.edition(language), self.newsletter.strings)

    def consent(self, settings: Settings, language: str) -> str:
        """The exact consent text shown (and recorded) in ``language``."""
        if settings.consent_text:
            return settings.consent_text
        return self.words(language)(
            "I agree to receive %(title)s by email. I can unsubscribe at any time with "
            "the link in every issue.",
            title=self.newsletter.title,
        )


def newest_issue(home: Path) -> LoadedIssue | None:
    """The newest issue file that loads (the newsletter's identity and editions)."""
    for path in reversed(issue_files(home / "issues")):
        try:
            return load_issue(path)
        except IssueError:
            continue
    return None


def offer(settings: Settings) -> Offer:
    loaded = newest_issue(settings.home)
    if loaded is None:
        raise ConfigError(
            f"{settings.home / 'issues'}: no valid issue file; sign-up needs one for the "
            "newsletter's title, theme and languages"
        )
    languages = (loaded.main, *(c for c in loaded.editions if c != loaded.main))
    return Offer(loaded.issue.newsletter, settings.signup_lists, languages)


# A sign-up form on another site may post JSON with JavaScript: any origin may,
# without credentials (there are no cookies here, and every answer is the same).
CORS = {"access-control-allow-origin": "*"}


class RecentMails:
    """Confirmation mails queued per client address in the last hour, in memory:
    a flood is turned away before it reaches the database (which decides, for
    every request that gets that far). Bounded: the least recent client goes."""

    def __init__(self, clients: int = 4096) -> None:
        self.clients = clients
        self._seen: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def full(self, client: str, limit: int, now: float) -> bool:
        with self._lock:
            times = [t for t in self._seen.get(client, []) if t > now - 3600]
            return len(times) >= limit

    def add(self, client: str, now: float) -> None:
        with self._lock:
            times = [t for t in self._seen.pop(client, []) if t > now - 3600]
            self._seen[client] = [*times, now]
            while len(self._seen) > self.clients:
                self._seen.popitem(last=False)


class OfferCache:
    """The offer, read again when an issue file changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key: tuple[Any, ...] = ()
        self._offer: Offer | None = None
        self._lock = threading.Lock()

    def get(self) -> Offer:
        folder = self.settings.home / "issues"
        try:
            key = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(folder)))
        except OSError:
            key = ()
        with self._lock:
            if self._offer is None or key != self._key:
                self._offer = offer(self.settings)
                self._key = key
            return self._offer


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def _fields(request: Request) -> dict[str, Any] | None:
    """The posted fields (JSON or a form); None for a body that is neither."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            data = json.loads(await request.body())
            return data if isinstance(data, dict) else None
        form = await request.form(max_files=0, max_fields=80)
    except Exception:  # noqa: BLE001 - a body that does not parse
        return None
    return {
        k: (form.getlist(k) if k == "lists" else form.get(k))
        for k in form.keys()  # noqa: SIM118 - FormData is a multidict
    }


async def _in_thread(
    request: Request, handle: Callable[[Request, dict[str, Any]], Response]
) -> Response:
    """Read the posted fields, then ``handle`` them in a thread: it waits for the
    database at times (a send holds it in turns), and the server goes on
    answering meanwhile."""
    fields = await _fields(request)
    if fields is None:
        return JSONResponse({"error": "the body is not a form or a JSON object"}, 400)
    return await run_in_threadpool(handle, request, fields)


def signup_routes(
    settings: Settings, offers: OfferCache, mailer: Callable[[], Mailer | None]
) -> list[Route]:
    """The routes; ``mailer()`` is the running Mailer (None until started)."""
    recent = RecentMails()

    def form_parts(
        o: Offer,
        language: str,
        email: str = "",
        name: str = "",
        chosen: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        words = o.words(language)
        return {
            "action": "/subscribe",
            "email": email,
            "name": name,
            "language": o.edition(language),
            "languages": [(c, language_name(c)) for c in o.languages],
            "lists": o.lists,
            "chosen": chosen,
            "consent": o.consent(settings, language),
            "token": signup.form_token(settings),
            "page": f"{settings.base_url}/subscribe",
            "button": words("Subscribe"),
        }

    def accepted(o: Offer, language: str, as_json: bool) -> Response:
        words = o.words(language)
        title = words("Check your inbox")
        text = words(
            "If the address you gave can receive it, a message with a confirmation link is "
            "on its way. Your subscription starts when you confirm."
        )
        if as_json:
            return JSONResponse(
                {"status": "ok", "title": title, "message": text},
                headers={"cache-control": "no-store", **CORS},
            )
        return _page(words, title, paragraphs=(text,))

    def show(request: Request) -> Response:
        o = offers.get()
        language = request.query_params.get("lang", "")
        words = o.words(language)
        title = words("Subscribe to %(title)s", title=o.newsletter.title)
        return _page(words, title, form=form_parts(o, language))

    def token(request: Request) -> Response:
        return JSONResponse(
            {"t": signup.form_token(settings), "wait_seconds": settings.signup_min_seconds},
            headers={"cache-control": "no-store", **CORS},
        )

    def preflight(request: Request) -> Response:
        return Response(
            status_code=204,
            headers={
                **CORS,
                "access-control-allow-methods": "GET, POST",
                "access-control-allow-headers": "content-type",
                "access-control-max-age": "86400",
            },
        )

    async def post(request: Request) -> Response:
        return await _in_thread(request, decide)

    def decide(request: Request, fields: dict[str, Any]) -> Response:
        o = offers.get()
        as_json = request.headers.get("content-type", "").startswith("application/json")
        posted = signup.Posted.read(fields)
        verdict = signup.judge(settings, posted, o.edition, o.lists)
        words = o.words(posted.language)
        if verdict.kind == signup.INVALID:
            message = words("Please enter a valid email address.")
            if as_json:
                return JSONResponse({"error": message, "field": "email"}, 400, headers=CORS)
            title = words("Subscribe to %(title)s", title=o.newsletter.title)
            parts = form_parts(o, posted.language, posted.email, posted.name)
            return _page(words, title, status=400, error=message, form=parts)
        if verdict.kind == signup.AGAIN:
            if as_json:
                return JSONResponse(
                    {"error": "get a form token first: GET /subscribe/token", "field": "t"},
                    400,
                    headers=CORS,
                )
            title = words("Subscribe to %(title)s", title=o.newsletter.title)
            parts = form_parts(o, verdict.language, verdict.email, verdict.name, verdict.lists)
            return _page(
                words,
                title,
                paragraphs=(words("One more step: press Subscribe to send your request."),),
                form=parts,
            )
        if verdict.kind == signup.ACCEPT:
            record = SignupRequest(
                email=verdict.email,
                name=verdict.name,
                language=verdict.language,
                lists=verdict.lists,
                lists_shown=o.lists,
                consent_text=o.consent(settings, verdict.language),
                ip=_client(request),
                user_agent=request.headers.get("user-agent", ""),
                page=posted.page or request.headers.get("referer", ""),
            )
            now = time.time()
            made = None
            if not recent.full(record.ip, settings.signup_per_ip_hour, now):
                with Store(settings.database, wait=30.0) as store:
                    made = Signups(store).request(
                        record, settings.signup_per_ip_hour, settings.signup_address_minutes, now
                    )
                if made is not None:
                    recent.add(record.ip, now)
            running = mailer()
            if made is not None and running is not None:
                running.wake()
        # The same answer whatever happened, in the language the post asked for.
        return accepted(o, posted.language, as_json)

    def _claim(request: Request) -> int | None:
        fields = verify_claim(settings.verify_keys, CONFIRM, request.path_params["token"])
        if not fields or len(fields) != 2 or not all(f.isdigit() for f in fields):
            return None
        if int(fields[1]) < time.time():
            return None  # expired
        return int(fields[0])

    def invalid(o: Offer, language: str = "") -> Response:
        words = o.words(language)
        return _page(
            words,
            words("This confirmation link is not valid or has expired"),
            status=400,
            link={"url": "/subscribe", "label": words("Sign up again to get a new link.")},
        )

    def confirm_page(request: Request) -> Response:
        o = offers.get()
        signup_id = _claim(request)
        if signup_id is None:
            return invalid(o)
        with Store(settings.database, wait=30.0) as store:
            found = Signups(store).get(signup_id)
        if found is None:
            return invalid(o)
        words = o.words(found.language)
        return _page(
            words,
            words("Confirm your subscription"),
            paragraphs=(
                words(
                    "Please confirm that %(email)s should receive %(title)s.",
                    email=found.email,
                    title=o.newsletter.title,
                ),
            ),
            button={
                "action": "",
                "fields": (),
                "label": words("Yes, subscribe me"),
                "quiet": False,
            },
        )

    def confirm(request: Request) -> Response:
        o = offers.get()
        signup_id = _claim(request)
        if signup_id is None:
            return invalid(o)
        with Store(settings.database, wait=30.0) as store:
            done = Signups(store).confirm(signup_id, _client(request))
        if done is None:
            return invalid(o)
        subscriber, first = done
        running = mailer()
        if first and settings.welcome_mail and running is not None:
            running.welcome(
                Welcome(subscriber.email, subscriber.name, subscriber.language, subscriber.id)
            )
        words = o.words(subscriber.language)
        token = sign(settings.secret_key.get(), subscriber.id, "")
        return _page(
            words,
            words("You are subscribed"),
            paragraphs=(
                words(
                    "Welcome! %(email)s will receive %(title)s.",
                    email=subscriber.email,
                    title=o.newsletter.title,
                ),
            ),
            link={"url": f"/preferences/{token}", "label": words("Your preferences")},
        )

    def _subscriber(request: Request) -> Subscriber | None:
        claim = verify(settings.verify_keys, request.path_params["token"])
        if claim is None:
            return None
        with Store(settings.database, wait=30.0) as store:
            return store.subscriber_by_id(claim.subscriber_id)

    def preferences_page(o: Offer, s: Subscriber, token: str, saved: bool = False) -> Response:
        words = o.words(s.language)
        if s.status != "active":
            return _page(
                words,
                words("You are unsubscribed"),
                paragraphs=(words("This address gets no more newsletters from us."),),
                link={
                    "url": "/subscribe",
                    "label": words("Subscribe to %(title)s", title=o.newsletter.title),
                },
            )
        parts = {
            "action": "",
            "email": None,
            "name": s.name,
            "language": o.edition(s.language),
            "languages": [(c, language_name(c)) for c in o.languages],
            "lists": o.lists,
            "chosen": tuple(s.lists),
            "consent": o.consent(settings, s.language),
            "token": "",
            "page": "",
            "button": words("Save"),
        }
        paragraphs = [s.email, words("Change what you receive, or unsubscribe.")]
        if saved:
            paragraphs.insert(0, words("Your preferences are saved."))
        return _page(
            words,
            words("Your preferences"),
            paragraphs=tuple(paragraphs),
            form=parts,
            button={
                "action": f"/unsubscribe/{token}",
                "fields": (("List-Unsubscribe", "One-Click"),),
                "label": words("Unsubscribe"),
                "quiet": True,
            },
        )

    def preferences(request: Request) -> Response:
        o = offers.get()
        s = _subscriber(request)
        if s is None:
            return _invalid_link()
        return preferences_page(o, s, request.path_params["token"])

    async def save_preferences(request: Request) -> Response:
        return await _in_thread(request, save)

    def save(request: Request, fields: dict[str, Any]) -> Response:
        o = offers.get()
        s = _subscriber(request)
        if s is None:
            return _invalid_link()
        if s.status != "active":
            return preferences_page(o, s, request.path_params["token"])
        posted = signup.Posted.read(fields)
        language = o.edition(posted.language)
        change = SignupRequest(
            email=s.email,
            name=clean(posted.name, 120),
            language=language,
            lists=signup.chosen(posted.lists, o.lists),
            lists_shown=o.lists,
            consent_text=o.consent(settings, language),
            ip=_client(request),
            user_agent=request.headers.get("user-agent", ""),
            page=str(request.url.path)[:100],
        )
        with Store(settings.database, wait=30.0) as store:
            updated = Signups(store).change(s.id, change)
        if updated is None:
            return _invalid_link()
        return preferences_page(o, updated, request.path_params["token"], saved=True)

    return [
        Route("/subscribe", show, methods=["GET", "HEAD"]),
        Route("/subscribe", post, methods=["POST"]),
        Route("/subscribe/token", token, methods=["GET"]),
        Route("/subscribe", preflight, methods=["OPTIONS"]),
        Route("/subscribe/token", preflight, methods=["OPTIONS"]),
        Route("/confirm/{token}", confirm_page, methods=["GET", "HEAD"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/preferences/{token}", preferences, methods=["GET", "HEAD"]),
        Route("/preferences/{token}", save_preferences, methods=["POST"]),
    ]


def _invalid_link() -> Response:
    words = Words("en", {})
    return _page(
        words,
        "This link is not valid",
        status=400,
        paragraphs=("It may have been cut short. Use the link in the newsletter email itself.",),
    )
