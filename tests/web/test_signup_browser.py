"""The sign-up's Done-when in a real headless Chromium (Debian's): fill in the
form, read the confirmation mail from a real SMTP server on loopback, open its
link, see the button, confirm; a plain GET of the link changes nothing. The
pages pass axe (WCAG 2 A/AA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import ARTIFACTS, NEEDS_BROWSER
from tests.helpers import Database
from tests.web.test_signup import link_in, rows, signup_server, wait_for

pytestmark = NEEDS_BROWSER

WAIT = 10_000


def _axe(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa"]})
    return [v["id"] for v in results.response["violations"]]


def test_a_reader_signs_up_confirms_in_the_browser_and_is_on_record(  # type: ignore[no-untyped-def]
    browser, newsletter_home: Path
) -> None:
    with signup_server(newsletter_home, NEWSLETTER_SIGNUP_MIN_SECONDS="1") as (client, handler):
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.goto(f"{client.base_url}/subscribe")
        assert _axe(page) == []
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("Name (optional)").fill("Rea Der")
        page.get_by_label("jobs").check()
        # The honeypot is out of sight and out of the tab order.
        box = page.locator("input[name=website]").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 0
        assert page.locator("input[name=website]").get_attribute("tabindex") == "-1"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "signup-form-375.png"))
        page.wait_for_timeout(1100)  # a person takes longer than the minimum
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for(timeout=WAIT)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "signup-answer-375.png"))

        (mail,) = wait_for(handler, 1)
        link = link_in(mail)
        assert rows(newsletter_home, "SELECT count(*) FROM subscribers") == [(0,)]
        page.goto(link)  # what a link scanner does too
        button = page.get_by_role("button", name="Yes, subscribe me")
        button.wait_for(timeout=WAIT)
        assert _axe(page) == []
        assert rows(newsletter_home, "SELECT count(*) FROM subscribers") == [(0,)]
        button.click()
        page.get_by_role("heading", name="You are subscribed").wait_for(timeout=WAIT)
        page.screenshot(path=str(ARTIFACTS / "signup-confirmed-375.png"))
        page.get_by_role("link", name="Your preferences").click()
        page.get_by_role("heading", name="Your preferences").wait_for(timeout=WAIT)
        assert _axe(page) == []
        assert page.get_by_label("jobs").is_checked()
        page.close()
    db = Database(newsletter_home)
    try:
        assert db.execute("SELECT email, name, status FROM subscribers").fetchall() == [
            ("reader@example.org", "Rea Der", "active")
        ]
        ((agent, consent, confirmed_at),) = db.execute(
            "SELECT user_agent, consent_text, confirmed_at FROM signups"
        ).fetchall()
    finally:
        db.close()
    assert "Chrome" in agent and consent.startswith("I agree") and confirmed_at
