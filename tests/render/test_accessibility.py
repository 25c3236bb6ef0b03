"""Every bundled theme, for the seed issue and a second newsletter unlike it, in
Debian's Chromium at phone and desktop width, light and dark: no horizontal
scroll, and axe-core (bundled by axe-playwright-python, run in the page) finds
no serious or critical violation. Screenshots are written as artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from composer.render.themes import bundled_themes
from tests.conftest import ARTIFACTS, NEEDS_BROWSER, SEED_ISSUE
from tests.helpers import DATA, run

pytestmark = [pytest.mark.no_database, *NEEDS_BROWSER]

ISSUES = {
    "seed": (SEED_ISSUE, "2025-04-16"),
    "release-notes": (DATA / "release-notes.yaml", "2025-06-02"),
}


def _build(home: Path, which: str, theme: str) -> Path:
    source, slug = ISSUES[which]
    text = source.read_text(encoding="utf-8").replace(
        f"date: {slug}", f"date: {slug}\ntheme: {theme}", 1
    )
    (home / "issues" / f"{slug}.yaml").write_text(text, encoding="utf-8")
    result = run("build", slug)
    assert result.exit_code == 0, result.output
    return home / "build" / slug / "email.html"


def _axe(page: Any) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("theme", bundled_themes())
@pytest.mark.parametrize("which", list(ISSUES))
def test_every_theme_reads_well_and_passes_axe(  # type: ignore[no-untyped-def]
    browser, newsletter_home: Path, which: str, theme: str
) -> None:
    html = _build(newsletter_home, which, theme)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for scheme in ("light", "dark"):
        for width in (375, 800):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page.route("http*://**", lambda route: route.abort())
            page.goto(html.as_uri())
            name = f"{which}-{theme}-{width}-{scheme}.png"
            page.screenshot(path=str(ARTIFACTS / name), full_page=True)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                problems.append(f"{name}: {scroll} px wide")
            for v in _axe(page):
                nodes = [n["target"] for n in v["nodes"][:3]]
                problems.append(f"{name}: {v['id']} ({v['impact']}): {v['help']} {nodes}")
            page.close()
    assert problems == []


def test_the_dark_scheme_changes_the_page(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    html = _build(newsletter_home, "seed", "default")
    colours = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 800, "height": 900}, color_scheme=scheme)
        page.route("http*://**", lambda route: route.abort())
        page.goto(html.as_uri())
        colours[scheme] = page.evaluate("""() => {
            const p = document.querySelector('.nl-text p:not([class])');
            const s = document.querySelector('.nl-surface');
            return [getComputedStyle(p).color, getComputedStyle(s).backgroundColor];
        }""")
        page.close()
    assert colours["light"] == ["rgb(31, 35, 40)", "rgb(255, 255, 255)"]
    assert colours["dark"] == ["rgb(232, 232, 232)", "rgb(28, 28, 28)"]
    source = html.read_text(encoding="utf-8")
    assert '<meta name="color-scheme" content="light dark"' in source
    assert '<meta name="supported-color-schemes" content="light dark"' in source
    assert "[data-ogsc] .nl-text *" in source and "[data-ogsb] .nl-surface" in source


def test_footer_links_are_big_enough_to_tap(browser, newsletter_home: Path) -> None:  # type: ignore[no-untyped-def]
    html = _build(newsletter_home, "seed", "default")
    page = browser.new_page(viewport={"width": 375, "height": 900})
    page.route("http*://**", lambda route: route.abort())
    page.goto(html.as_uri())
    heights = page.evaluate("""() => [...document.querySelectorAll('.nl-subtle a, .nl-preheader a')]
        .map(a => [a.textContent.trim(), a.getBoundingClientRect().height])""")
    page.close()
    assert len(heights) >= 6  # three footer links, unsubscribe, view online (twice)
    assert all(h >= 24 for _, h in heights), heights


def test_the_preheader_is_padded(newsletter_home: Path) -> None:
    html = _build(newsletter_home, "seed", "default").read_text(encoding="utf-8")
    start = html.index("Clearview AI's facial recognition tech allegedly built")
    hidden = html[start : html.index("</div>", start)]
    assert hidden.count("\u200c\u00a0") == 30  # the inbox preview shows nothing after it
