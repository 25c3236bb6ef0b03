"""The built email in a real headless Chromium (Debian's), at phone and desktop width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, NEEDS_BROWSER
from tests.helpers import run

pytestmark = NEEDS_BROWSER


def _columns(page) -> Any:  # type: ignore[no-untyped-def]
    """Bounding boxes of the first region's spotlight and other-news columns."""
    return page.evaluate("""() => ['.spotlight', '.more'].map(sel => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, bottom: r.bottom};
    })""")


@pytest.mark.parametrize("width", [375, 800])
def test_email_is_responsive(browser, newsletter_home: Path, width: int) -> None:  # type: ignore[no-untyped-def]
    assert run("build", "2025-04-16").exit_code == 0
    html = newsletter_home / "build" / "2025-04-16" / "email.html"
    page = browser.new_page(viewport={"width": width, "height": 900})
    # Loaded as a file with every network request blocked: the email needs none to lay out.
    page.route("http*://**", lambda route: route.abort())
    page.goto(html.as_uri())
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    spot, more = _columns(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"email-{width}.png"), full_page=True)
    page.close()
    assert scroll_width <= width  # no horizontal scrolling
    if width == 375:
        assert spot["w"] > 300 and more["w"] > 300  # full width each
        assert more["y"] >= spot["bottom"] - 1  # stacked
    else:
        assert (
            abs(spot["y"] - more["y"]) < 1 and more["x"] > spot["x"] + spot["w"] - 1
        )  # side by side
        assert spot["w"] + more["w"] <= 601
