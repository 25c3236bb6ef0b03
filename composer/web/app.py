"""HTTP at the edge: the production app (archive + unsubscribe) and the preview app.

Nothing here serves files by path: every URL is matched by a route whose
parameters are validated (an issue date, a token), so ``..``, encoded
slashes, NUL bytes and symlinks have nothing to reach. Every response carries
a Content-Security-Policy, ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer`` (unsubscribe URLs hold tokens). Request
bodies are capped.

One-click unsubscribe follows RFC 8058: a POST whose body carries
``List-Unsubscribe=One-Click`` (urlencoded or multipart, no cookies) to the
URL in the List-Unsubscribe header unsubscribes at once and answers 200,
never a redirect; a GET (link scanners prefetch) changes nothing and shows a
button that posts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from composer.audience.tokens import verify
from composer.config import IPNetwork, Settings
from composer.errors import ComposerError
from composer.issue.editions import LANGUAGE_RE, direction
from composer.render.i18n import Words
from composer.render.media import NAME_RE
from composer.send.transactional import Mailer
from composer.store.database import Store
from composer.web import archive
from composer.web import signup as signup_pages

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP_PAGES = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class RateLimit:
    """Requests per client: a token bucket per address (``burst`` at once, then
    ``per_second``), in a table of bounded size (the least recently seen client is
    forgotten first), so that a flood from many addresses cannot grow memory."""

    def __init__(self, per_second: float = 10.0, burst: float = 40.0, clients: int = 4096) -> None:
        self.per_second, self.burst, self.clients = per_second, burst, clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return allowed


class Guard:
    """ASGI middleware in front of every request:

    - a Host allow-list against DNS rebinding (the preview);
    - requests per client limited (429) and requests in progress capped (503);
    - the body read here, however it arrives (Content-Length or chunked), and
      refused past ``max_body`` (413) before the app sees any of it;
    - security headers on every response.
    """

    def __init__(
        self,
        app: ASGIApp,
        csp: str,
        hosts: tuple[str, ...] | None = None,
        max_body: int = MAX_BODY,
        rate: RateLimit | None = None,
        max_active: int = 64,
        proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.app, self.csp, self.hosts, self.max_body = app, csp, hosts, max_body
        self.rate, self.max_active, self.proxies = rate, max_active, proxies
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        if self.hosts is not None:
            host = _hostname(headers.get("host", ""))
            if host not in self.hosts:
                await self._plain(send, 403, "This preview only answers on 127.0.0.1.")
                return
        client = (scope.get("client") or ("?", 0))[0]
        if self.proxies:
            client = client_address(client, headers.get("x-forwarded-for", ""), self.proxies)
            scope["client"] = (client, 0)
        # Sign-up posts have limits of their own (per client, in memory before
        # the database): a flood gets the same answer as anyone, never a 429.
        limited = not (scope.get("method") == "POST" and scope.get("path") == "/subscribe")
        if limited and self.rate is not None and not self.rate.allow(client):
            await self._plain(
                send,
                429,
                "Too many requests; try again in a few seconds.",
                [(b"retry-after", b"5")],
            )
            return
        if self.active >= self.max_active:
            await self._plain(
                send, 503, "Busy; try again in a few seconds.", [(b"retry-after", b"5")]
            )
            return
        self.active += 1
        try:
            await self._handle(scope, receive, send, headers)
        finally:
            self.active -= 1

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        length = headers.get("content-length", "")
        if (length.isdigit() and int(length) > self.max_body) or (length and not length.isdigit()):
            await self._plain(send, 413, "Request body too large.")
            return
        body = bytearray()
        more = scope.get("method") not in ("GET", "HEAD") or bool(length)
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._plain(send, 413, "Request body too large.")
                return
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        async def secure_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", self.csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"SAMEORIGIN"),
                ]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *[(k, v) for k, v in extra if k not in names],
                ]
            await send(message)

        await self.app(scope, replay, secure_send)

    async def _plain(
        self, send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-security-policy", self.csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"connection", b"close"),
                    *(extra or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": text.encode()})


def _trusted(address: str, proxies: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str, forwarded_for: str, proxies: tuple[IPNetwork, ...]) -> str:
    """The client's address: the peer, unless the peer is one of our reverse
    proxies; then the last address of X-Forwarded-For that is not one of them
    (what each proxy appended; anything to its left the client could have
    written itself)."""
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # not an address: believe nothing more
    return peer


def _hostname(host_header: str) -> str:
    """The host of a Host header, without the port: '127.0.0.1', '[::1]'."""
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0]


_PAGES = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "page.html": """<!DOCTYPE html>
<html lang="{{ lang }}" dir="{{ dir }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }}</title>
<style>body { font: 17px/1.5 Helvetica, Arial, sans-serif; color: #1f2328; max-width: 34rem;
margin: 3rem auto; padding: 0 1rem; } button { font: inherit; padding: .6rem 1.2rem;
background: #a4161a; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }</style>
</head><body><main>
<h1>{{ title }}</h1>
{% for p in paragraphs %}<p>{{ p }}</p>{% endfor %}
{% if button %}<form method="post" action="">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{ button }}</button></form>{% endif %}
</main></body></html>
""",
        }
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def page(
    title: str,
    *paragraphs: str,
    button: str | None = None,
    status: int = 200,
    lang: str = "en",
) -> HTMLResponse:
    html = _PAGES.get_template("page.html").render(
        title=title, paragraphs=paragraphs, button=button, lang=lang, dir=direction(lang)
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def _words(language: str) -> Words:
    """The words of a page for a subscriber whose language is ``language``."""
    tag = language.strip().replace("_", "-")
    return Words(tag if LANGUAGE_RE.match(tag) else "en", {})


def not_found() -> HTMLResponse:
    return page("Not found", "There is nothing at this address.", status=404)


INVALID_LINK = (
    "This unsubscribe link is not valid",
    "It may have been cut short. Use the unsubscribe link in the newsletter "
    "email itself, or reply to the newsletter to ask us to remove you.",
)


async def _one_click_body(request: Request) -> bool:
    """Whether the POST body carries List-Unsubscribe=One-Click: urlencoded or
    multipart as RFC 8058 says, or the bare body from a client that left out
    the Content-Type."""
    body = await request.body()
    if body.strip() == b"List-Unsubscribe=One-Click":
        return True
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:  # a body that does not parse as a form
        return False
    return form.get("List-Unsubscribe") == "One-Click"


def serve_app(settings: Settings) -> ASGIApp:
    """``newsletter serve``: the archive and unsubscribes, on the newsletter's database."""
    pages: dict[tuple[str, int, str], bytes] = {}
    lock = threading.Lock()

    def _language(request: Request, items: list[archive.Entry]) -> str | None:
        """The path's edition language: None for the main one; raises 404 for
        one the archive does not have."""
        code = request.path_params.get("edition")
        if code is None:
            return None
        if code not in archive.languages(items):
            raise HTTPException(404)
        return str(code)

    def index(request: Request) -> Response:
        items = archive.entries(settings)
        return HTMLResponse(archive.index_page(settings, items, _language(request, items)))

    def feed(request: Request) -> Response:
        items = archive.entries(settings)
        return Response(
            archive.feed(settings, items, _language(request, items)),
            media_type="application/atom+xml; charset=utf-8",
        )

    def issue(request: Request) -> Response:
        slug = request.path_params["slug"]
        if not archive.SLUG_RE.match(slug):
            return not_found()
        found = [e for e in archive.entries(settings) if e.slug == slug]
        if not found:
            return not_found()
        entry = found[0]
        edition = request.path_params.get("edition")
        if edition is not None and (
            edition == entry.loaded.main or edition not in entry.loaded.editions
        ):
            return not_found()
        key = (str(entry.path), entry.path.stat().st_mtime_ns, edition or "")
        with lock:
            html = pages.get(key)
        if html is None:
            html = archive.issue_page(settings, entry, edition)
            with lock:
                pages[key] = html
        return HTMLResponse(html)

    def media_file(request: Request) -> Response:
        """An image kept next to an issue, published under its content's name."""
        name = request.path_params["name"]
        if not NAME_RE.match(name):
            return not_found()
        try:
            data = (settings.home / "media" / name).read_bytes()
        except OSError:
            return not_found()
        kind = name.rsplit(".", 1)[1]
        return Response(
            data,
            media_type=f"image/{'jpeg' if kind == 'jpg' else kind}",
            headers={"cache-control": "public, max-age=31536000, immutable"},
        )

    def unsubscribe_info(request: Request) -> Response:
        return page(
            "Unsubscribe",
            "To unsubscribe, use the unsubscribe link at the foot of "
            "the newsletter email you received: it is personal to you.",
        )

    def confirm(request: Request) -> Response:
        claim = verify(settings.verify_keys, request.path_params["token"])
        if claim is None:
            return page(*INVALID_LINK, status=400)
        with Store(settings.database) as store:
            subscriber = store.subscriber_by_id(claim.subscriber_id)
        words = _words(subscriber.language if subscriber else "")
        if subscriber is None or subscriber.status != "active":
            return page(
                words("You are unsubscribed"),
                words("This address gets no more newsletters from us."),
                lang=words.language,
            )
        return page(
            words("Unsubscribe?"),
            words("Stop sending the newsletter to %(email)s?", email=subscriber.email),
            button=words("Unsubscribe"),
            lang=words.language,
        )

    async def one_click(request: Request) -> Response:
        claim = verify(settings.verify_keys, request.path_params["token"])
        if claim is None:
            return page(*INVALID_LINK, status=400)
        if not await _one_click_body(request):
            return page(
                "Unsubscribe?",
                "This request did not say List-Unsubscribe=One-Click.",
                button="Unsubscribe",
                status=400,
            )
        detail = "one-click" + (f" (list {claim.list_name})" if claim.list_name else "")
        with Store(settings.database) as store:
            store.unsubscribe_id(claim.subscriber_id, detail)
            subscriber = store.subscriber_by_id(claim.subscriber_id)
        words = _words(subscriber.language if subscriber else "")
        return page(
            words("You are unsubscribed"),
            words("You will get no more newsletters from us. Sorry to see you go."),
            lang=words.language,
        )

    offers = signup_pages.OfferCache(settings)
    running: list[Mailer] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """The sign-up mailer runs as long as the server (when an issue gives the
        newsletter's identity; without one, sign-up pages say it is not set up)."""
        try:
            o = offers.get()
        except ComposerError as exc:
            log.warning("sign-up is off: %s", exc)
            yield
            return
        mailer = Mailer(settings, o.newsletter, o.edition)
        mailer.start()
        mailer.wake()  # sign-ups a previous run recorded and did not mail
        running.append(mailer)
        try:
            yield
        finally:
            mailer.stop()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            *signup_pages.signup_routes(settings, offers, lambda: running[0] if running else None),
            Route("/", index),
            Route("/feed.xml", feed),
            Route("/index.html", index),
            Route("/issues/{slug}/", issue),
            Route("/issues/{slug}/index.html", issue),
            Route("/issues/{slug}", issue),
            Route("/issues/{slug}/{edition}/", issue),
            Route("/issues/{slug}/{edition}/index.html", issue),
            Route("/media/{name}", media_file),
            Route("/unsubscribe", unsubscribe_info),
            Route("/unsubscribe/{token}", confirm, methods=["GET", "HEAD"]),
            Route("/unsubscribe/{token}", one_click, methods=["POST"]),
            Route("/{edition}/", index),
            Route("/{edition}/index.html", index),
            Route("/{edition}/feed.xml", feed),
        ],
        exception_handlers={404: lambda r, e: not_found(), ComposerError: _composer_error},
    )
    app.router.redirect_slashes = False
    return Guard(app, CSP_PAGES, rate=RateLimit(), proxies=settings.trusted_proxies)


def _composer_error(request: Request, exc: Exception) -> Response:
    return page("Something went wrong", str(exc), status=500)


# -- preview -----------------------------------------------------------------

STATIC = Path(__file__).resolve().parent / "static"

CSP_PREVIEW = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; frame-src 'self'; base-uri 'none'; "
    "form-action 'none'"
)
CSP_EMAIL = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'self'"
)


def preview_app(state: Any) -> ASGIApp:
    """``newsletter preview``: the email as sent, live. ``state`` is a PreviewState."""

    shell_html = (STATIC / "preview.html").read_bytes()
    script_js = (STATIC / "preview.js").read_bytes()

    def shell(request: Request) -> Response:
        return HTMLResponse(shell_html, headers={"cache-control": "no-store"})

    def script(request: Request) -> Response:
        return Response(script_js, media_type="text/javascript; charset=utf-8")

    def email_html(request: Request) -> Response:
        snap = state.edition_snapshot(request.query_params.get("edition"))
        if snap is None:
            return PlainTextResponse("The issue has errors; see the preview page.", 503)
        return HTMLResponse(
            snap.html, headers={"content-security-policy": CSP_EMAIL, "cache-control": "no-store"}
        )

    def email_text(request: Request) -> Response:
        snap = state.edition_snapshot(request.query_params.get("edition"))
        return PlainTextResponse(snap.text if snap else "", headers={"cache-control": "no-store"})

    def state_json(request: Request) -> Response:
        return Response(
            json.dumps(state.as_json(request.query_params.get("edition"))),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    async def events(request: Request) -> Response:
        import asyncio

        async def stream() -> AsyncIterator[bytes]:
            seen = -1
            while not await request.is_disconnected():
                if state.version != seen:
                    seen = state.version
                    yield f"data: {seen}\n\n".encode()
                await asyncio.sleep(0.1)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"cache-control": "no-store"}
        )

    app = Starlette(
        routes=[
            Route("/", shell),
            Route("/app.js", script),
            Route("/email.html", email_html),
            Route("/email.txt", email_text),
            Route("/state.json", state_json),
            Route("/events", events),
        ]
    )
    return Guard(app, CSP_PREVIEW, hosts=("127.0.0.1", "localhost", "[::1]"))
