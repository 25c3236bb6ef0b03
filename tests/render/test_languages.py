"""The theme's own words in the edition's language (gettext catalogs, dates by
locale, the newsletter's own words) and right-to-left editions, in the HTML and
the text part."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import lxml.html
import pytest

from composer.issue.load import load_issue
from composer.issue.words import LOCALE_DIR, WORDS
from composer.render.i18n import Words, long_date
from composer.render.pipeline import render_edition, render_issue
from composer.render.text import LRM, RLM
from composer.render.themes import bundled_root
from tests.helpers import DATA, run, write_issue

pytestmark = pytest.mark.no_database

ARABIC = DATA / "arabic-issue.yaml"


def _catalog(language: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    with (LOCALE_DIR / f"{language}.po").open("rb") as f:
        catalog = read_po(f)
    return {str(m.id): str(m.string) for m in catalog if m.id}


@pytest.mark.parametrize("language", ["en", "es", "fr", "ar"])
def test_each_catalog_has_exactly_the_theme_words(language: str) -> None:
    catalog = _catalog(language)
    assert set(catalog) == set(WORDS)
    for msgid, text in catalog.items():
        if language != "en":
            assert text, f"{language}.po: {msgid!r} is not translated"
            assert set(re.findall(r"%\((\w+)\)s", text)) == set(
                re.findall(r"%\((\w+)\)s", msgid)
            ), f"{language}.po: {msgid!r} must keep its placeholders"


def test_every_word_a_theme_uses_is_in_the_catalogs() -> None:
    used = set()
    for path in bundled_root().rglob("*.j2"):
        used |= set(re.findall(r"""_\("([^"]+)"[,)]""", path.read_text(encoding="utf-8")))
    used.discard("...")  # a comment's example
    assert used, "the bundled themes use the catalogs"
    assert used <= set(WORDS), used - set(WORDS)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en-GB", "16 April 2025"),
        ("en", "April 16, 2025"),
        ("es", "16 de abril de 2025"),
        ("fr", "16 avril 2025"),
        ("ar", "16 أبريل 2025"),
        ("zz", "April 16, 2025"),  # unknown to CLDR: English
    ],
)
def test_dates_are_formatted_for_the_locale(language: str, expected: str) -> None:
    assert long_date(dt.date(2025, 4, 16), language) == expected


def test_words_fall_back_from_region_to_language_and_escape_values() -> None:
    words = Words("es-MX", {})
    assert words("Unsubscribe") == "Darse de baja"
    assert words("This email was sent to %(email)s.", email="a@b.org") == (
        "Este correo se envió a a@b.org."
    )
    assert Words("de", {})("Unsubscribe") == "Unsubscribe"  # no catalog: English
    own = Words("fr", {"Unsubscribe": "<b>Stop</b>"})
    assert str(own.markup("Unsubscribe")) == "&lt;b&gt;Stop&lt;/b&gt;"  # the editor's text
    assert str(own.markup("This email was sent to %(email)s.", email="<x>")) == (
        "Ce courriel a été envoyé à &lt;x&gt;."
    )


def test_an_edition_speaks_its_language_throughout(newsletter_home: Path) -> None:
    path = write_issue(
        newsletter_home, "2025-04-16.yaml", [("  language: en-GB", "  language: fr")]
    )
    rendered = render_issue(load_issue(path))
    html, text = rendered.html, rendered.text
    assert '<html lang="fr" dir="ltr"' in html
    for phrase in ("Se désabonner", "Voir dans le navigateur", "16 avril 2025", "À la une :"):
        assert phrase in html, phrase
    assert "Ce courriel a été envoyé à" in html
    assert 'aria-label="Réponse de l’entreprise"' in html
    for english in ("Unsubscribe", "View in browser", "This email was sent", "Spotlight:"):
        assert english not in html and english not in text, english
    assert "Se désabonner:\n<" in text
    assert "16 avril 2025" in text


def test_the_newsletter_replaces_any_word_and_check_guards_them(newsletter_home: Path) -> None:
    path = write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "  theme: default\n",
                "  theme: default\n  strings:\n    View in browser: Read it online\n"
                '    "This email was sent to %(email)s.": "Sent to %(email)s by the BHRRC."\n',
            )
        ],
    )
    rendered = render_issue(load_issue(path))
    assert "Read it online" in rendered.html and "View in browser" not in rendered.html
    assert "Sent to __nlfield_email__ by the BHRRC." in rendered.text
    write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "View in browser: Read it online\n",
                "View online: Read it online\n    Unsubscribe: Leave %(list)s\n",
            )
        ],
    )
    result = run("check", "2025-04-16")
    assert result.exit_code == 1
    assert (
        "error: newsletter.strings.View online: not one of the theme's words; "
        "`newsletter strings` lists them"
    ) in result.stdout
    assert (
        "error: newsletter.strings.Unsubscribe: must keep the same placeholders (none)"
        in result.stdout
    )


def test_a_language_without_a_catalog_is_a_warning(newsletter_home: Path) -> None:
    write_issue(newsletter_home, "2025-04-16.yaml", [("  language: en-GB", "  language: de")])
    result = run("check", "2025-04-16")
    assert result.exit_code == 0
    assert "warning: newsletter.language: no catalog for 'de' (ar, en, es, fr have one)" in (
        result.stdout
    )


def _arabic(home: Path) -> Path:
    target = home / "issues" / "2025-05-01.yaml"
    shutil.copy(ARABIC, target)
    return target


def test_an_arabic_edition_is_right_to_left_throughout(newsletter_home: Path) -> None:
    rendered = render_issue(load_issue(_arabic(newsletter_home)))
    doc = lxml.html.document_fromstring(rendered.html.encode())
    assert doc.get("dir") == "rtl" and doc.get("lang") == "ar"
    columns = doc.xpath("//div[contains(@class, 'mj-column-per')]")
    assert columns
    english = doc.xpath("//div[@lang='en']")[0]
    for column in columns:
        inner_lang = column.xpath(".//div[@lang]/@lang")
        want = "ltr" if inner_lang and inner_lang[0] in ("en", "ja") else "rtl"
        assert column.get("dir") == want, lxml.html.tostring(column)[:200]
        assert f"direction:{want}" in column.get("style").replace(" ", "")
        assert f"text-align:{'left' if want == 'ltr' else 'right'}" in column.get("style")
    # Every text of the edition carries dir="rtl" itself (Gmail drops <html dir>).
    texts = [n for n in doc.xpath("//p|//h1|//h2|//h3") if n.text_content().strip()]
    for node in texts:
        ancestor = node.xpath("ancestor-or-self::*[@dir][1]/@dir")
        lang = node.xpath("ancestor-or-self::*[@lang][1]/@lang")[0]
        assert ancestor[0] == ("ltr" if lang in ("en", "ja") else "rtl"), node.text_content()
        inner = node.xpath("ancestor-or-self::*[@dir][1]")[0]
        assert inner.tag != "html", f"only the document says dir: {node.text_content()!r}"
    assert english.get("dir") == "ltr"
    assert "border-right:3px solid #a4161a" in rendered.html  # the reply box, mirrored
    assert "إلغاء الاشتراك" in rendered.html and "العرض في المتصفح" in rendered.html
    assert "1 مايو 2025" in rendered.html


def test_an_arabic_text_part_runs_right_to_left(newsletter_home: Path) -> None:
    text = render_issue(load_issue(_arabic(newsletter_home))).text
    lines = [line for line in text.split("\n") if line]
    english = [line for line in lines if "nickel plants" in line or "ENGLISH EDITION" in line]
    assert english and all(line.startswith(LRM) for line in english)
    others = [line for line in lines if line not in english and not line.startswith(LRM)]
    assert all(line.startswith(RLM) for line in others), [
        line for line in others if not line.startswith(RLM)
    ]
    assert any("<https://" in line for line in others)  # URLs too: the line stays RTL


def test_a_section_in_another_language_says_so(newsletter_home: Path) -> None:
    path = write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "  - type: text\n    heading: Events\n",
                "  - type: text\n    heading: Events\n    lang: ar\n",
            )
        ],
    )
    loaded = load_issue(path)
    html = render_edition(loaded, "en-GB").html
    assert '<div lang="ar" dir="rtl">' in html
    assert 'dir="rtl"' in html and '<html lang="en-GB" dir="ltr"' in html


def test_a_theme_copied_before_catalogs_shows_the_labels_translated(
    newsletter_home: Path,
) -> None:
    own = newsletter_home / "templates" / "default" / "partials"
    own.mkdir(parents=True)
    (own / "footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text><p>{{ issue.newsletter.footer.unsubscribe_label }}"
        " | {{ issue.newsletter.footer.view_online_label }}</p></mj-text></mj-column>"
        "</mj-section>\n",
        encoding="utf-8",
    )
    path = write_issue(
        newsletter_home, "2025-04-16.yaml", [("  language: en-GB", "  language: es")]
    )
    html = render_issue(load_issue(path), newsletter_home).html
    assert "Darse de baja | Ver en el navegador" in html
    assert "None" not in html
