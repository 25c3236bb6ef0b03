"""The archive, `newsletter serve` (one-click unsubscribe) and their security."""

from __future__ import annotations

import contextlib
import mailbox
import xml.etree.ElementTree as ET
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from composer.audience.tokens import sign
from tests.helpers import Database, run
from tests.servers import newsletter_server, raw_get

KEY = "test-secret-key"


def status_of(home: Path, email: str) -> str:
    db = Database(home)
    try:
        return str(
            db.execute("SELECT status FROM subscribers WHERE email = ?", (email,)).fetchone()[0]
        )
    finally:
        db.close()


def subscriber_id(home: Path, email: str) -> int:
    db = Database(home)
    try:
        return int(db.execute("SELECT id FROM subscribers WHERE email = ?", (email,)).fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def sent_home(newsletter_home: Path) -> Path:
    run("subscribers", "add", "ana@example.org", "--name", "Ana")
    run("subscribers", "add", "bo@example.org", "--name", "Bo")
    assert run("send", "2025-04-16", "--yes").exit_code == 0
    return newsletter_home


def test_archive_lists_sent_issues_with_a_feed(sent_home: Path) -> None:
    result = run("archive", "--out", "site")
    assert result.stdout == ("wrote site/index.html, site/feed.xml and 1 issue page(s)\n")
    index = (sent_home / "site" / "index.html").read_text()
    # Links between pages are relative (the folder works from disk and under any path);
    # the feed and canonical links are absolute.
    assert 'href="issues/2025-04-16/index.html"' in index and 'href="feed.xml"' in index
    assert '<link rel="canonical" href="http://127.0.0.1:8000/">' in index
    assert "Clearview AI surveillance tech allegedly designed to target minorities" in index
    feed = ET.parse(sent_home / "site" / "feed.xml").getroot()
    atom = "{http://www.w3.org/2005/Atom}"
    entries = feed.findall(f"{atom}entry")
    assert [e.findtext(f"{atom}id") for e in entries] == [
        "http://127.0.0.1:8000/issues/2025-04-16/"
    ]
    page = (sent_home / "site" / "issues" / "2025-04-16" / "index.html").read_text()
    assert "Clearview AI’s facial recognition" in page
    assert "__nlfield" not in page and "This email was sent to" not in page
    assert "/unsubscribe/" not in page and "ana@example.org" not in page
    assert '<link rel="canonical" href="http://127.0.0.1:8000/issues/2025-04-16/">' in page
    assert '<link rel="index" href="../../index.html">' in page


def test_the_archive_is_readable_by_others_and_works_from_disk(sent_home: Path) -> None:
    import os
    import stat

    old = os.umask(0o077)  # a cautious umask must not make the site unreadable
    try:
        assert run("archive", "--out", "deep/site").exit_code == 0
    finally:
        os.umask(old)
    site = sent_home / "deep" / "site"
    for path in [site, *site.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    # Every relative link resolves to a file of the archive.
    import re

    for page in site.rglob("*.html"):
        for href in re.findall(r'href="([^"#:]+)"', page.read_text()):
            assert (page.parent / href).resolve().is_file(), (page, href)


def test_archive_of_unsent_issues(newsletter_home: Path) -> None:
    assert "and 0 issue page(s)" in run("archive").stdout
    assert "and 1 issue page(s)" in run("archive", "--all").stdout


def test_the_view_in_browser_link_points_to_the_archive_page(sent_home: Path) -> None:
    message = next((sent_home / "outbox" / "new").iterdir()).read_text()
    assert "http://127.0.0.1:8000/issues/2025-04-16/" in message


def test_one_click_unsubscribe_as_gmail_does_it(sent_home: Path) -> None:
    ana, bo = (
        subscriber_id(sent_home, "ana@example.org"),
        subscriber_id(sent_home, "bo@example.org"),
    )
    with newsletter_server(sent_home, "serve") as port:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, follow_redirects=False) as client:
            token = sign(KEY, ana, "")
            # A link scanner's prefetch changes nothing.
            get = client.get(f"/unsubscribe/{token}")
            assert get.status_code == 200 and status_of(sent_home, "ana@example.org") == "active"
            assert '<form method="post"' in get.text and "ana@example.org" in get.text
            post = client.post(
                f"/unsubscribe/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "Mozilla/5.0 (compatible; Google)",
                },
            )
            assert post.status_code == 200 and "location" not in post.headers
            assert status_of(sent_home, "ana@example.org") == "unsubscribed"
            again = client.post(
                f"/unsubscribe/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert again.status_code == 200
            multipart = client.post(
                f"/unsubscribe/{sign(KEY, bo, '')}", files={"List-Unsubscribe": (None, "One-Click")}
            )
            assert multipart.status_code == 200
            assert status_of(sent_home, "bo@example.org") == "unsubscribed"
            run("subscribers", "add", "cy@example.org")
            cy = subscriber_id(sent_home, "cy@example.org")
            bare = client.post(
                f"/unsubscribe/{sign(KEY, cy, '')}", content=b"List-Unsubscribe=One-Click"
            )  # no Content-Type
            assert bare.status_code == 200
            assert status_of(sent_home, "cy@example.org") == "unsubscribed"
            for response in (get, post):
                assert response.headers["x-content-type-options"] == "nosniff"
                assert "default-src 'none'" in response.headers["content-security-policy"]
                assert response.headers["referrer-policy"] == "no-referrer"


def test_forged_tokens_change_nothing(sent_home: Path) -> None:
    ana = subscriber_id(sent_home, "ana@example.org")
    good = sign(KEY, ana, "")
    body, mac = good.split(".")
    forged = [
        sign("another-key", ana, ""),  # foreign
        good[:-3],  # truncated
        body + "." + ("A" if mac[0] != "A" else "B") + mac[1:],  # tampered MAC
        sign(KEY, ana, "")[:-1] + "x",
        "ana@example.org",  # knowing the address is not enough
        body,  # no MAC at all
    ]
    with newsletter_server(sent_home, "serve") as port, httpx.Client() as client:
        answers = set()
        for token in forged:
            r = client.post(
                f"http://127.0.0.1:{port}/unsubscribe/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            answers.add((r.status_code, r.text))
        missing_body = client.post(f"http://127.0.0.1:{port}/unsubscribe/{good}")
    assert len(answers) == 1 and next(iter(answers))[0] == 400  # one generic answer
    assert missing_body.status_code == 400
    assert status_of(sent_home, "ana@example.org") == "active"


def test_serve_archive_pages_and_traversal(sent_home: Path) -> None:
    (sent_home / "issues" / "2025-05-01.yaml").symlink_to("/etc/passwd")
    with newsletter_server(sent_home, "serve") as port:
        status, index = raw_get(port, "/")
        assert status == 200 and b"issues/2025-04-16/index.html" in index
        for path in ("/issues/2025-04-16/", "/issues/2025-04-16/index.html"):
            status, page = raw_get(port, path)
            assert status == 200 and "Clearview AI’s facial".encode() in page
        status, feed = raw_get(port, "/feed.xml")
        assert status == 200 and b"application/atom+xml" in feed
        for path in [
            "/issues/../../../etc/passwd",
            "/issues/%2e%2e/%2e%2e/etc/passwd",
            "/issues/..%2f..%2fetc%2fpasswd/",
            "/issues/2025-04-16%00/",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/issues/2025-04-16/../../newsletter.db",
            "/newsletter.db",
            "/.env",
            "/issues/2025-05-01/",
            "/issues/2030-01-01/",
            "/issues/2025-04-16/..%2f..%2f.env",
        ]:
            status, body = raw_get(port, path)
            assert status == 404, path
            assert b"root:" not in body and b"SQLite" not in body
            assert b"content-security-policy:" in body.lower()
        with httpx.Client() as client:
            big = client.post(
                f"http://127.0.0.1:{port}/unsubscribe/x.y",
                content=b"x" * 100_000,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    assert big.status_code == 413


def test_serve_refuses_a_public_address_without_a_secret_key(
    newsletter_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    result = run("serve", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: NEWSLETTER_SECRET_KEY is not set")


def test_unsubscribe_requests_from_the_mailto_mailbox(sent_home: Path, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "requests", create=True)
    for sender, subject in [
        (
            "ana@example.org",
            f"unsubscribe {sign(KEY, subscriber_id(sent_home, 'ana@example.org'), '')}",
        ),
        (
            "mallory@example.net",
            f"unsubscribe {sign('wrong', subscriber_id(sent_home, 'bo@example.org'), '')}",
        ),
        ("Bo <bo@example.org>", "please remove me"),
    ]:
        msg = EmailMessage()
        msg["From"], msg["Subject"] = sender, subject
        box.add(msg)
    result = run("subscribers", "unsubscribe-mailbox", str(tmp_path / "requests"))
    lines = result.stdout.splitlines()
    assert lines[0] == "1 unsubscribe request(s) applied"
    assert sorted(lines[1:]) == [  # a Maildir has no order
        "no valid token, handle by hand: Bo <bo@example.org>",
        "no valid token, handle by hand: mallory@example.net",
    ]
    assert status_of(sent_home, "ana@example.org") == "unsubscribed"
    assert status_of(sent_home, "bo@example.org") == "active"


def test_preview_refuses_other_hosts(newsletter_home: Path) -> None:
    with newsletter_server(newsletter_home, "preview", "2025-04-16") as port:
        status, body = raw_get(port, "/", host="evil.example")
        ok, page = raw_get(port, "/")
        rebound, _ = raw_get(port, "/state.json", host=f"evil.example:{port}")
    assert status == 403 and rebound == 403
    assert ok == 200 and b"x-content-type-options: nosniff" in page.lower()


def _post_chunked(port: int, path: str, total: int) -> int:
    """POST ``total`` bytes with Transfer-Encoding: chunked (no Content-Length)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"List-Unsubscribe=One-Click&x=" + b"x" * max(0, min(total, 65_000) - 29)
        sent = 0
        try:
            while sent < total:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before taking it all: fine
        data = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                data += chunk
    return int(data.split(b" ", 2)[1])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_huge_chunked_body_is_refused_without_a_traceback(sent_home: Path) -> None:
    token = sign(KEY, subscriber_id(sent_home, "ana@example.org"), "")
    info: dict[str, object] = {}
    with newsletter_server(sent_home, "serve", info=info) as port:
        assert _post_chunked(port, f"/unsubscribe/{token}", 10_000_000) == 413
        small = _post_chunked(port, f"/unsubscribe/{token}", 1)  # still one-click
        assert small == 200
    assert "Traceback" not in str(info["stderr"])
    assert status_of(sent_home, "ana@example.org") == "unsubscribed"


def test_a_flood_gets_429_and_503_with_bounded_memory(sent_home: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    info: dict[str, object] = {}
    with newsletter_server(sent_home, "serve", info=info) as port:
        pid = int(str(info["pid"]))
        before = _rss_kb(pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/feed.xml").status_code == 200

        def hit(i: int) -> int:
            with httpx.Client(timeout=30) as c:
                try:
                    return c.get(f"http://127.0.0.1:{port}/unsubscribe/x{i}").status_code
                except httpx.HTTPError:
                    return 0  # refused at the socket: also a way to say no

        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(hit, range(2000)))
        after = _rss_kb(pid)
    assert codes.count(429) > 1000  # one client: limited to its burst and rate
    assert set(codes) <= {400, 429, 503, 0}
    assert after - before < 40_000, (before, after)  # KB: no growth with the flood
    assert "Traceback" not in str(info["stderr"])


def test_only_canonical_tokens_are_accepted(sent_home: Path) -> None:
    sid = subscriber_id(sent_home, "ana@example.org")
    token = sign(KEY, sid, "")
    body, mac = token.split(".")
    from composer.audience.tokens import verify

    assert verify(KEY, token) is not None
    for variant in (f"{body}=.{mac}", f"{body}.{mac}==", f"{body}==.{mac}=", token + "="):
        assert verify(KEY, variant) is None, variant
    with newsletter_server(sent_home, "serve") as port, httpx.Client(timeout=30) as client:
        padded = client.post(
            f"http://127.0.0.1:{port}/unsubscribe/{body}.{mac}==",
            data={"List-Unsubscribe": "One-Click"},
        )
    assert padded.status_code == 400
    assert status_of(sent_home, "ana@example.org") == "active"


def test_a_rotated_secret_key_still_accepts_links_in_inboxes(sent_home: Path) -> None:
    old_link = sign(KEY, subscriber_id(sent_home, "ana@example.org"), "")
    rotated = {"NEWSLETTER_SECRET_KEY": f"new-key-2026, {KEY}"}
    with (
        newsletter_server(sent_home, "serve", env_extra=rotated) as port,
        httpx.Client(timeout=30) as client,
    ):
        ok = client.post(
            f"http://127.0.0.1:{port}/unsubscribe/{old_link}",
            data={"List-Unsubscribe": "One-Click"},
        )
    assert ok.status_code == 200
    assert status_of(sent_home, "ana@example.org") == "unsubscribed"
    # New messages are signed with the new key.
    from composer.config import load_settings

    settings = load_settings(sent_home, {"NEWSLETTER_SECRET_KEY": "new-key-2026,old"})
    assert settings.secret_key.get() == "new-key-2026"
    assert settings.verify_keys == ["new-key-2026", "old"]
