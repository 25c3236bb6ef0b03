"""The preview and the unsubscribe page in a real headless Chromium (Debian's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from composer.audience.tokens import sign
from tests.conftest import ARTIFACTS, NEEDS_BROWSER, REPO
from tests.helpers import run
from tests.servers import newsletter_server

pytestmark = NEEDS_BROWSER

WAIT = 10_000  # ms: generous, for a loaded CI machine; the update itself takes ~0.2 s


def test_preview_shows_both_widths_text_and_updates_live(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    issue = newsletter_home / "issues" / "2025-04-16.yaml"
    original = issue.read_text()
    with newsletter_server(newsletter_home, "preview", "2025-04-16") as port:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(
            "document.getElementById('subject').textContent.startsWith('Clearview AI')",
            timeout=WAIT,
        )
        desktop = page.frame_locator("#desktop")
        phone = page.frame_locator("#phone")
        desktop.locator("h1").wait_for(timeout=WAIT)
        assert page.locator("#desktop").bounding_box()["width"] == 800
        assert page.locator("#phone").bounding_box()["width"] == 375
        assert "FROM US" in page.locator("#text").inner_text()
        assert "of Gmail's 102 KB" in page.locator("#size").inner_text()
        assert (
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
            in page.locator("#headers").inner_text()
        )
        assert "section 'Jobs' is empty" in page.locator("#findings").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "preview-desktop.png"))
        page.locator("#phone").screenshot(path=str(ARTIFACTS / "preview-375.png"))

        # Edit the file on disk: the page updates by itself.
        issue.write_text(original.replace("Privacy groups warn", "Rights groups warn"))
        phone.locator("text=Rights groups warn").wait_for(timeout=WAIT)
        desktop.locator("text=Rights groups warn").wait_for(timeout=WAIT)
        page.wait_for_function(
            "document.getElementById('text').textContent.includes('Rights groups warn')",
            timeout=WAIT,
        )

        # A broken file shows its error; fixing it recovers.
        issue.write_text(original.replace("subject: Clearview", "subject: [Clearview"))
        page.locator("#error").wait_for(state="visible", timeout=WAIT)
        assert "2025-04-16.yaml:28:10: YAML syntax error" in page.locator("#error").inner_text()
        issue.write_text(original.replace("Privacy groups warn", "Civil society warns"))
        page.locator("#error").wait_for(state="hidden", timeout=WAIT)
        desktop.locator("text=Civil society warns").wait_for(timeout=WAIT)
        page.close()


def test_preview_follows_template_edits(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copytree(REPO / "templates", newsletter_home / "templates")
    header = newsletter_home / "templates" / "default" / "partials" / "header.mjml.j2"
    with newsletter_server(newsletter_home, "preview", "2025-04-16") as port:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        desktop = page.frame_locator("#desktop")
        desktop.locator("h1").wait_for(timeout=WAIT)
        header.write_text(
            header.read_text().replace(
                "{{ nl.organisation }}", "{{ nl.organisation }} (edited theme)"
            )
        )
        desktop.locator("text=(edited theme)").wait_for(timeout=WAIT)
        page.close()


def test_preview_as_a_subscriber_escapes_the_name(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    run("subscribers", "add", "x@example.org", "--name", "<img src=x onerror=alert(1)>")
    with newsletter_server(
        newsletter_home, "preview", "2025-04-16", "--as", "x@example.org"
    ) as port:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: _record(dialogs, d))
        page.goto(f"http://127.0.0.1:{port}/")
        page.frame_locator("#desktop").locator("h1").wait_for(timeout=WAIT)
        headers = page.locator("#headers").inner_text()
        assert 'To: "<img src=x onerror=alert(1)>" <x@example.org>' in headers  # text, not HTML
        html = httpx.get(f"http://127.0.0.1:{port}/email.html").text
        assert "This email was sent to x@example.org" in html
        page.close()
        assert dialogs == []


def test_unsubscribe_page_shows_a_hostile_name_as_text(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    run("subscribers", "add", "x@example.org", "--name", "<img src=x onerror=alert(1)>")
    run("subscribers", "add", "<script>@example.org")  # refused: never stored
    with newsletter_server(newsletter_home, "serve") as port:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: _record(dialogs, d))
        token = sign("test-secret-key", 1, "")
        page.goto(f"http://127.0.0.1:{port}/unsubscribe/{token}")
        assert "Stop sending the newsletter to x@example.org?" in page.inner_text("main")
        page.click("button")
        page.wait_for_selector("text=You are unsubscribed", timeout=WAIT)
        assert page.url.endswith(token)  # no redirect
        page.close()
    assert dialogs == []
    assert "x@example.org\tunsubscribed" in run("subscribers", "list").stdout


def _record(dialogs: list[str], dialog: Any) -> None:
    """A JavaScript dialog would mean injected script ran: note it and close it."""
    dialogs.append(dialog.message)
    dialog.dismiss()


def test_preview_switches_between_editions(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.helpers import bilingual_seed

    bilingual_seed(newsletter_home)
    run("subscribers", "add", "ana@example.org", "--name", "Ana", "--language", "es")
    with newsletter_server(
        newsletter_home, "preview", "2025-04-16", "--as", "ana@example.org"
    ) as port:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        # Previewed as Ana, the Spanish edition is shown first.
        expect(page.locator("#subject")).to_contain_text("Tecnología", timeout=WAIT)
        assert page.locator("#edition-box").is_visible()
        options = page.locator("#edition option").all_inner_texts()
        assert options == ["English (en-GB)", "Español (es)"]
        assert page.locator("#edition").input_value() == "es"
        phone = page.frame_locator("#phone")
        phone.locator("text=Darse de baja").wait_for(timeout=WAIT)
        assert "Content-Language: es" in page.locator("#headers").inner_text()
        page.select_option("#edition", "en-GB")
        expect(page.locator("#subject")).to_contain_text("Clearview AI", timeout=WAIT)
        phone.locator("text=Unsubscribe").wait_for(timeout=WAIT)
        assert "This email was sent to ana@example.org" in page.locator("#text").inner_text()
        assert "edition=en-GB" in page.url
        page.close()
