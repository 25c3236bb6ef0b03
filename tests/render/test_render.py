"""The seed issue renders completely, safely and responsively (as HTML, text and MIME)."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import lxml.html
import pytest

from composer.config import load_settings
from composer.errors import TemplateError
from composer.issue.load import load_issue, parse_issue
from composer.mail.message import personalise
from composer.render.fields import TOKEN_RE
from composer.render.pipeline import render_issue
from composer.send.prepare import message_template, prepare
from composer.send.recipients import Recipients
from tests.conftest import REPO, SEED_ISSUE, normalise, seed_content_lines

pytestmark = pytest.mark.no_database


@pytest.fixture(scope="module")
def rendered():  # type: ignore[no-untyped-def]
    return render_issue(load_issue(SEED_ISSUE))


def html_text(html: str) -> str:
    doc = lxml.html.document_fromstring(html.encode())
    for bad in doc.xpath("//style|//script|//title"):
        bad.drop_tree()
    # The preheader is in the inbox preview, not the reading text.
    return normalise(doc.body.text_content())


def text_without_urls(text: str) -> str:
    """The text part as the seed's lines read: no URLs, no reference numbers, no
    spoken labels after the right-of-reply icons."""
    text = re.sub(r"(?m)^\[\d+\] <[^>]*>$", "", text)
    text = re.sub(r" ?<(https?|mailto):[^>]*>", "", text)
    text = re.sub(r" \[\d+\]", "", text)
    text = re.sub(r"(💬|❌) (Company response|No response): ", r"\1 ", text)
    return normalise(text)


def test_seed_has_the_lines_we_check() -> None:
    lines = seed_content_lines()
    assert lines[0].startswith("clearview ai surveillance tech")
    assert lines[-1] == "company non-responses"
    assert len(lines) == 99


def _body_lines(rendered) -> list[str]:  # type: ignore[no-untyped-def]
    """The seed's lines but its first two: the subject, which the repost showed
    as a title. The email has it as its Subject (and the HTML's <title>); under
    the masthead it only repeated itself."""
    subject = normalise(rendered.subject)
    lines = seed_content_lines()
    assert lines[:2] == [subject, subject]
    return lines[2:]


def test_every_seed_line_is_in_the_html(rendered) -> None:  # type: ignore[no-untyped-def]
    body = html_text(rendered.html)
    missing = [line for line in _body_lines(rendered) if line not in body]
    assert missing == []
    title = lxml.html.document_fromstring(rendered.html.encode()).findtext(".//title")
    assert normalise(title) == normalise(rendered.subject)


def test_every_seed_line_is_in_the_text_part(rendered) -> None:  # type: ignore[no-untyped-def]
    body = text_without_urls(rendered.text)
    missing = [line for line in _body_lines(rendered) if line not in body]
    assert missing == []


def test_text_part_shows_links_as_urls(rendered) -> None:  # type: ignore[no-untyped-def]
    text = rendered.text
    assert "to the net-zero transition, view our Transition Minerals Tracker [3] — and\n" in text
    assert (
        "\n[3] <https://www.business-humanrights.org/en/from-us/transition-minerals-tracker/>\n"
    ) in text  # after the section, whole
    assert "\n  <https://www.business-humanrights.org/en/blog/hidden-risks-" in text  # a list's
    assert all(len(line) <= 78 or "<http" in line for line in text.splitlines())
    assert "💬 Company response: We invited PT QMB" in text
    assert "FROM US" in rendered.text  # headings stand out in capitals
    assert "<p>" not in rendered.text and "&amp;" not in rendered.text


def test_html_is_a_standards_mode_inlined_email(rendered) -> None:  # type: ignore[no-untyped-def]
    html = rendered.html
    assert html.startswith("<!DOCTYPE html>")  # premailer drops MRML's lower-case one
    assert '<html lang="en-GB"' in html
    assert "@media only screen and (min-width: 480px)" in html  # columns side by side
    assert "@media only screen and (max-width: 480px)" in html  # our mobile rules
    doc = lxml.html.document_fromstring(html.encode())
    # CSS is inlined: headings and paragraphs carry their styles.
    assert "font-size:20px" in doc.xpath("//h1")[0].get("style").replace(" ", "")
    assert all(p.get("style") for p in doc.xpath("//div[contains(@class,'spotlight')]//p"))
    # Nothing to fetch at render time or by the client but links and images.
    assert "@import" not in html and "<link" not in html
    assert "<title>" in html and "Clearview AI's facial recognition" in html  # preheader


def test_placeholders_are_filled_per_subscriber(rendered) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings()
    prepared = prepare(str(SEED_ISSUE), settings)
    recipient = Recipients(settings, prepared.slug).sample()
    html, text = personalise(rendered, recipient)
    assert TOKEN_RE.search(rendered.html) and TOKEN_RE.search(rendered.text)
    assert not TOKEN_RE.search(html) and not TOKEN_RE.search(text)
    assert recipient.unsubscribe_url in html and recipient.unsubscribe_url in text
    message = email.message_from_bytes(
        message_template(settings, prepared).build(recipient), policy=email.policy.SMTP
    )
    body = message.get_body(("html",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == html


def test_web_version_has_nothing_personal() -> None:
    web = render_issue(load_issue(SEED_ISSUE), web=True)
    assert not TOKEN_RE.search(web.html) and not TOKEN_RE.search(web.text)


def test_issue_content_is_escaped_and_raw_html_is_text(tmp_path: Path) -> None:
    source = (
        SEED_ISSUE.read_bytes()
        .replace(
            b"headline: Clearview AI\xe2\x80\x99s facial",
            b"headline: <script>alert(1)</script> facial",
        )
        .replace(b"An investigation has revealed", b"<img src=x onerror=alert(1)> An investigation")
    )
    rendered = render_issue(parse_issue(source, tmp_path / "2025-04-16.yaml"))
    assert "<script>alert(1)" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<img src=x" not in rendered.html and "&lt;img src=x" in rendered.html


def test_a_theme_is_chosen_per_issue(tmp_path: Path) -> None:
    source = SEED_ISSUE.read_bytes().replace(
        b"date: 2025-04-16", b"date: 2025-04-16\ntheme: minimal"
    )
    rendered = render_issue(parse_issue(source, tmp_path / "2025-04-16.yaml"))
    assert "Georgia" in rendered.html
    assert "spotlight" not in rendered.html  # the minimal theme's own regions partial
    body = html_text(rendered.html)
    assert [line for line in _body_lines(rendered) if line not in body] == []


def test_undefined_template_variable_names_file_and_line(tmp_path: Path) -> None:
    themes = tmp_path / "templates"
    (themes / "broken" / "blocks").mkdir(parents=True)
    (themes / "default").symlink_to(REPO / "templates" / "default")
    (themes / "broken" / "blocks" / "text.mjml.j2").write_text(
        "<mj-section>\n<mj-column><mj-text>{{ block.nonexistent }}</mj-text></mj-column>\n</mj-section>\n"
    )
    source = SEED_ISSUE.read_bytes().replace(
        b"date: 2025-04-16", b"date: 2025-04-16\ntheme: broken"
    )
    with pytest.raises(TemplateError, match=r"broken/blocks/text\.mjml\.j2:2: .*nonexistent"):
        render_issue(parse_issue(source, tmp_path / "2025-04-16.yaml"), home=tmp_path)


def test_unknown_theme_is_a_clear_error(tmp_path: Path) -> None:
    source = SEED_ISSUE.read_bytes().replace(
        b"date: 2025-04-16", b"date: 2025-04-16\ntheme: nosuch"
    )
    with pytest.raises(TemplateError, match="theme 'nosuch' not found.*known themes: default"):
        render_issue(parse_issue(source, tmp_path / "2025-04-16.yaml"))


@pytest.mark.parametrize("theme", ["default", "minimal"])
def test_heading_outline_never_skips_a_level(tmp_path: Path, theme: str) -> None:
    source = SEED_ISSUE.read_bytes().replace(
        b"date: 2025-04-16", f"date: 2025-04-16\ntheme: {theme}".encode()
    )
    html = render_issue(parse_issue(source, tmp_path / "2025-04-16.yaml")).html
    levels = [
        int(h.tag[1])
        for h in lxml.html.document_fromstring(html.encode()).iter(
            "h1", "h2", "h3", "h4", "h5", "h6"
        )
    ]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
