"""The built email in a real headless Chromium (Debian's), at phone and desktop width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, NEEDS_BROWSER
from tests.helpers import run

pytestmark = [pytest.mark.no_database, *NEEDS_BROWSER]


def _columns(page) -> Any:  # type: ignore[no-untyped-def]
    """Bounding boxes of the first region's spotlight and other-news columns."""
    return page.evaluate("""() => ['.nl-spotlight', '.nl-more'].map(sel => {
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


def test_an_arabic_newsletter_reads_right_to_left_on_a_phone(  # type: ignore[no-untyped-def]
    browser, newsletter_home: Path
) -> None:
    import shutil

    from tests.helpers import DATA

    shutil.copy(DATA / "arabic-issue.yaml", newsletter_home / "issues" / "2025-05-01.yaml")
    assert run("build", "2025-05-01").exit_code == 0
    html = newsletter_home / "build" / "2025-05-01" / "email.html"
    page = browser.new_page(viewport={"width": 375, "height": 900})
    page.route("http*://**", lambda route: route.abort())
    page.goto(html.as_uri())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "email-ar-375.png"), full_page=True)
    # Each paragraph and heading: its direction, its alignment, and where its
    # lines sit in the column (right-aligned text ends at the right edge).
    blocks = page.evaluate("""() => [...document.querySelectorAll('p, h1, h2, h3')]
        .filter(e => e.textContent.trim() && e.getBoundingClientRect().width > 0)
        .map(e => {
            const s = getComputedStyle(e), r = e.getBoundingClientRect();
            const range = document.createRange(); range.selectNodeContents(e);
            const lines = [...range.getClientRects()];
            return {text: e.textContent.trim().slice(0, 30), dir: s.direction, cls: e.className,
                    align: s.textAlign, lang: e.closest('[lang]').lang,
                    right: r.right - parseFloat(s.paddingRight) - parseFloat(s.borderRightWidth),
                    left: r.left + parseFloat(s.paddingLeft) + parseFloat(s.borderLeftWidth),
                    lineRight: Math.max(...lines.map(l => l.right)),
                    lineLeft: Math.min(...lines.map(l => l.left))};
        })""")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    assert scroll_width <= 375
    arabic = [b for b in blocks if b["lang"] == "ar"]
    english = [b for b in blocks if b["lang"] == "en"]
    assert len(arabic) > 10 and english
    for b in arabic:
        assert b["dir"] == "rtl", b
        if "nl-preheader" in b["cls"]:  # top right in English: top left, mirrored
            assert b["align"] == "left" and b["lineLeft"] < 40, b
        elif b["align"] != "center":  # the footer is centred, in either direction
            assert b["align"] in ("right", "start"), b
            assert abs(b["lineRight"] - b["right"]) < 2, b  # lines end at the right edge
            assert b["lineLeft"] > b["left"] - 1, b
    for b in english:  # the English section inside stays left to right
        assert b["dir"] == "ltr" and abs(b["lineLeft"] - b["left"]) < 2, b
