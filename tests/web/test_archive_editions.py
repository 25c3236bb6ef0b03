"""The archive of an issue with editions: each edition at its own URL, linked to
the others (hreflang), an index and a feed per language, on disk and served."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import Database, bilingual_seed, run
from tests.servers import newsletter_server, raw_get

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def bilingual_sent(newsletter_home: Path) -> Path:
    bilingual_seed(newsletter_home)
    run("subscribers", "add", "ana@example.org", "--language", "es")
    run("subscribers", "add", "ben@example.org", "--language", "en")
    assert run("send", "2025-04-16", "--yes").exit_code == 0
    return newsletter_home


def _alternates(page: str) -> dict[str, str]:
    return dict(re.findall(r'<link rel="alternate" hreflang="([^"]+)" href="([^"]+)">', page))


def test_the_archive_shows_both_editions_linked_to_each_other(bilingual_sent: Path) -> None:
    result = run("archive", "--out", "site")
    assert result.exit_code == 0, result.output
    site = bilingual_sent / "site"
    english = (site / "issues" / "2025-04-16" / "index.html").read_text(encoding="utf-8")
    spanish = (site / "issues" / "2025-04-16" / "es" / "index.html").read_text(encoding="utf-8")
    both = {
        "en-GB": "http://127.0.0.1:8000/issues/2025-04-16/",
        "es": "http://127.0.0.1:8000/issues/2025-04-16/es/",
        "x-default": "http://127.0.0.1:8000/issues/2025-04-16/",
    }
    assert _alternates(english) == both and _alternates(spanish) == both
    assert '<link rel="canonical" href="http://127.0.0.1:8000/issues/2025-04-16/es/">' in spanish
    assert '<html lang="es"' in spanish and "Una investigación ha revelado" in spanish
    assert '<html lang="en-GB"' in english and "An investigation has revealed" in english
    # Visible links, each to the other edition, in the reader's words.
    assert 'Other languages: <a href="es/index.html" hreflang="es" lang="es"' in english
    assert "Español</a>" in english
    assert 'Otros idiomas: <a href="../index.html" hreflang="en-GB" lang="en-GB"' in spanish
    assert "English</a>" in spanish
    assert "__nlfield" not in spanish and "ana@example.org" not in spanish
    # An index and a feed per language.
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="issues/2025-04-16/index.html"' in index and 'href="es/index.html"' in index
    es_index = (site / "es" / "index.html").read_text(encoding="utf-8")
    assert 'href="../issues/2025-04-16/es/index.html"' in es_index
    assert (
        "Tecnología de vigilancia de Clearview AI" in es_index and "16 de abril de 2025" in es_index
    )
    feed = ET.parse(site / "es" / "feed.xml").getroot()
    assert feed.get("{http://www.w3.org/XML/1998/namespace}lang") == "es"
    entry = feed.find(f"{ATOM}entry")
    assert entry is not None
    assert entry.findtext(f"{ATOM}id") == "http://127.0.0.1:8000/issues/2025-04-16/es/"
    assert (entry.findtext(f"{ATOM}title") or "").startswith("Tecnología de vigilancia")
    main_feed = ET.parse(site / "feed.xml").getroot()
    titles = [e.findtext(f"{ATOM}title") for e in main_feed.findall(f"{ATOM}entry")]
    assert titles and (titles[0] or "").startswith("Clearview AI surveillance tech")
    # Every relative link of every page resolves to a file of the archive.
    for page in site.rglob("*.html"):
        for href in re.findall(r'href="([^"#:]+)"', page.read_text(encoding="utf-8")):
            assert (page.parent / href).resolve().is_file(), (page, href)


def test_serve_shows_each_edition_at_its_own_url(bilingual_sent: Path) -> None:
    with newsletter_server(bilingual_sent, "serve") as port:
        for path in ("/issues/2025-04-16/es/", "/issues/2025-04-16/es/index.html"):
            status, page = raw_get(port, path)
            assert status == 200, path
            assert "Una investigación ha revelado".encode() in page
        status, page = raw_get(port, "/es/")
        assert status == 200 and "Actualización Semanal".encode() in page
        status, feed = raw_get(port, "/es/feed.xml")
        assert status == 200 and b"/issues/2025-04-16/es/" in feed
        for path in (
            "/issues/2025-04-16/de/",
            "/issues/2025-04-16/en-GB/",  # the main edition lives at /issues/DATE/
            "/de/",
            "/de/feed.xml",
            "/es/../newsletter.db",
            "/issues/2025-04-16/es/../../../.env",
        ):
            status, _ = raw_get(port, path)
            assert status == 404, path
        # The Spanish reader's view-in-browser link is the Spanish page.
    message = next(
        m.read_text(encoding="utf-8")
        for m in (bilingual_sent / "outbox" / "new").iterdir()
        if "ana@example.org" in m.read_text(encoding="utf-8")
    )
    assert "http://127.0.0.1:8000/issues/2025-04-16/es/" in message


def test_the_unsubscribe_pages_speak_the_subscribers_language(bilingual_sent: Path) -> None:

    import httpx

    from composer.audience.tokens import sign

    db = Database(bilingual_sent)
    try:
        (ana,) = db.execute("SELECT id FROM subscribers WHERE email = 'ana@example.org'").fetchone()
        db.execute("UPDATE subscribers SET language = 'ar' WHERE email = 'ben@example.org'")
        db.commit()
        (ben,) = db.execute("SELECT id FROM subscribers WHERE email = 'ben@example.org'").fetchone()
    finally:
        db.close()
    with (
        newsletter_server(bilingual_sent, "serve") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        token = sign("test-secret-key", ana, "")
        ask = client.get(f"/unsubscribe/{token}")
        assert '<html lang="es" dir="ltr">' in ask.text
        assert "¿Dejar de enviar el boletín a ana@example.org?" in ask.text
        assert ">Darse de baja</button>" in ask.text
        done = client.post(
            f"/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200 and "Se ha dado de baja" in done.text
        arabic = client.get(f"/unsubscribe/{sign('test-secret-key', ben, '')}")
        assert '<html lang="ar" dir="rtl">' in arabic.text and "إلغاء الاشتراك" in arabic.text
