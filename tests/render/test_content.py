"""What newsletters need beyond the seed's shapes: the new blocks, images and
code on a phone, headings inside stories, the text part, and the size as sent."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest

from composer.issue.load import load_issue, parse_issue
from composer.render.pipeline import render_issue
from tests.conftest import SEED_ISSUE
from tests.helpers import DATA, run, seed_with_more_links, write_issue

pytestmark = pytest.mark.no_database

RELEASE_NOTES = DATA / "release-notes.yaml"


def _release_notes(home: Path, theme: str = "default") -> Path:
    target = home / "issues" / "2025-06-02.yaml"
    text = RELEASE_NOTES.read_text(encoding="utf-8")
    target.write_text(
        text.replace("date: 2025-06-02", f"date: 2025-06-02\ntheme: {theme}"), "utf-8"
    )
    return target


def test_the_second_newsletter_uses_every_block_type() -> None:
    from composer.issue.model import BLOCK_TYPES

    issue = parse_issue(RELEASE_NOTES.read_bytes(), Path("2025-06-02.yaml")).issue
    assert {b.type for b in issue.sections} == set(BLOCK_TYPES)


def test_new_blocks_render_in_html_and_text(newsletter_home: Path) -> None:
    rendered = render_issue(load_issue(_release_notes(newsletter_home)))
    doc = lxml.html.document_fromstring(rendered.html.encode())
    # The callout: a table cell (Outlook keeps a cell's padding), with its heading.
    cell = doc.xpath("//td[contains(., 'can leak a token')]")[-1]
    assert "padding:14px 16px" in cell.get("style").replace(" ", "").replace(
        "14px16px", "14px 16px"
    )
    # The button: a table cell with the colour on it, and a link.
    link = doc.xpath("//a[normalize-space()='Get your ticket']")[0]
    assert link.get("href") == "https://stellar.example.org/conf/2025/tickets/"
    button_cell = link.xpath("ancestor::td[@bgcolor][1]")[0]
    assert button_cell.get("bgcolor") == "#a4161a"
    # The image: alt, link, display width; its caption under it.
    img = doc.xpath("//img[contains(@alt, 'The dashboard')]")[0]
    assert img.get("width") == "552"
    assert img.xpath("ancestor::a[1]/@href") == ["https://stellar.example.org/blog/3.2/#dashboard"]
    assert "400-package monorepo" in rendered.html
    # The quote, with who said it, linked.
    quote = doc.xpath("//blockquote")[-1]
    assert "plan our day around the build" in quote.text_content()
    assert doc.xpath("//a[normalize-space()='Aiko Tanaka, at StellarConf 2025']")
    text = rendered.text
    for phrase in (
        "SECURITY FIX",
        "!! Versions 3.0 to 3.1.4 can leak a token in debug logs. Upgrade now, then\nrotate",
        "Get your ticket:\n<https://stellar.example.org/conf/2025/tickets/>",
        "[The dashboard, with build times per project on the left and a plugin list on\nthe right]",
        "> We used to plan our day around the build. Now we forget it is running.\n"
        "— Aiko Tanaka, at StellarConf 2025",
    ):
        assert phrase in text, phrase
    assert all(
        len(line) <= 78 or "<http" in line or line.startswith("    ") for line in text.splitlines()
    )


def test_headings_in_a_story_go_under_its_headline(newsletter_home: Path) -> None:
    rendered = render_issue(load_issue(_release_notes(newsletter_home)))
    doc = lxml.html.document_fromstring(rendered.html.encode())
    levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels.count(1) == 1  # the body's "# Upgrading" is not a second h1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    upgrading = doc.xpath("//*[normalize-space()='Upgrading']")[0]
    assert upgrading.tag == "h3"  # under the lead's h2 headline


def test_images_and_code_stay_within_a_phone_screen(newsletter_home: Path) -> None:
    rendered = render_issue(load_issue(_release_notes(newsletter_home)))
    doc = lxml.html.document_fromstring(rendered.html.encode())
    inline = doc.xpath("//img[contains(@alt, 'plugin manager')]")[0]
    assert "max-width:100%" in inline.get("style").replace(" ", "")
    pre = doc.xpath("//pre")[0]
    assert "white-space:pre-wrap" in pre.get("style").replace(" ", "")


def test_the_logo_links_where_it_says(newsletter_home: Path) -> None:
    path = write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "  theme: default\n",
                "  theme: default\n  logo: {src: 'https://example.org/logo.png', alt: BHRRC, "
                "href: 'https://www.business-humanrights.org/en/'}\n",
            )
        ],
    )
    doc = lxml.html.document_fromstring(render_issue(load_issue(path)).html.encode())
    logo = doc.xpath("//img[@alt='BHRRC']")[0]
    assert logo.xpath("ancestor::a[1]/@href") == ["https://www.business-humanrights.org/en/"]


def test_the_themes_share_nothing_but_structure(newsletter_home: Path) -> None:
    """minimal sets every token itself: none of the default theme's colours."""
    html = render_issue(load_issue(_release_notes(newsletter_home, "minimal"))).html
    body = html[html.index("<body") :]
    for colour in ("#a4161a", "#f7f7f7", "#eeeeee", "#fff7e6"):
        assert colour not in body, colour
    assert "Georgia" in body
    # One gutter for every text, image and rule: nothing sits off the text edge.
    pads = set(re.findall(r"padding:0(?:px)? (\d+)px", body))
    assert pads <= {"20"}, pads


def test_the_seed_with_five_links_in_every_region_stays_under_85_kb(tmp_path: Path) -> None:
    big = seed_with_more_links(SEED_ISSUE.read_text(encoding="utf-8"))
    assert big.count("Another story from the region") == 30
    rendered = render_issue(parse_issue(big.encode(), tmp_path / "2025-04-16.yaml"))
    assert rendered.html_bytes < 85 * 1024, rendered.html_bytes  # quoted-printable, as sent


def test_check_measures_the_size_as_sent(newsletter_home: Path) -> None:
    result = run("build", "2025-04-16")
    shown = re.search(r"HTML part: ([\d.]+) KB as sent", result.stdout)
    assert shown is not None
    raw = (newsletter_home / "build" / "2025-04-16" / "email.html").read_bytes()
    assert float(shown.group(1)) * 1024 > len(raw)  # encoded is bigger than the HTML itself
