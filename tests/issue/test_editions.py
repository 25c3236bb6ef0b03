"""Editions: several languages in one issue file, laid over the main one, and
what `check` says about an edition that lacks what another has."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import IssueError
from composer.issue.editions import choose, is_rtl, merge
from composer.issue.load import load_issue
from tests.helpers import add_edition, bilingual_seed, run

pytestmark = pytest.mark.no_database

SEED = Path("issues/2025-04-16.yaml")


def test_an_overlay_shares_what_it_does_not_give() -> None:
    main = {
        "subject": "Hello",
        "sections": [
            {"type": "lead", "story": {"headline": "A", "url": "https://x.org/a", "body": "a"}},
            {"type": "text", "heading": "Events", "body": "e"},
        ],
    }
    over = {"subject": "Hola", "sections": [{"story": {"headline": "Á", "body": "á"}}]}
    merged = merge(main, over)
    assert merged["subject"] == "Hola"
    assert merged["sections"][0] == {
        "type": "lead",
        "story": {"headline": "Á", "url": "https://x.org/a", "body": "á"},
    }
    assert merged["sections"][1] == main["sections"][1]  # not given: shared
    # Another type replaces the block; omit leaves it out; a plain list is replaced whole.
    over = {"sections": [{"type": "text", "body": "t"}, {"omit": True}]}
    assert merge(main, over)["sections"] == [{"type": "text", "body": "t"}]
    assert merge({"sources": ["A", "B"]}, {"sources": ["C"]}) == {"sources": ["C"]}


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("es-MX", "es"),
        ("es_MX", "es"),
        ("pt", "pt-BR"),
        ("fr", "en-GB"),
        ("", "en-GB"),
        ("en", "en-GB"),
        ("en-GB", "en-GB"),
        ("ar", "ar"),
    ],
)
def test_each_reader_gets_the_edition_of_their_language(language: str, expected: str) -> None:
    assert choose(language, ["en-GB", "es", "pt-BR", "ar"], "en-GB") == expected


@pytest.mark.parametrize(
    ("tag", "rtl"),
    [("ar", True), ("he", True), ("fa", True), ("ur", True), ("ar-EG", True)]
    + [("az-Arab", True), ("ku-Latn", False), ("en", False), ("ja", False), ("iw", True)],
)
def test_right_to_left_languages(tag: str, rtl: bool) -> None:
    assert is_rtl(tag) is rtl


def test_the_seed_with_its_spanish_edition_loads(newsletter_home: Path) -> None:
    bilingual_seed(newsletter_home)
    loaded = load_issue(SEED)
    assert list(loaded.editions) == ["en-GB", "es"]
    es = loaded.edition("ES")
    assert es.language == "es"
    assert es.newsletter.title == "Actualización Semanal"
    assert es.subject.startswith("Tecnología de vigilancia de Clearview AI")
    main = loaded.issue
    # Same structure, shared links: the lead's URL and sources come from the main edition.
    assert [b.type for b in es.sections] == [b.type for b in main.sections]
    assert es.sections[0].story.url == main.sections[0].story.url  # type: ignore[union-attr]
    assert es.sections[0].story.sources == ["Mother Jones"]  # type: ignore[union-attr]
    assert es.sections[0].story.kicker == "EE. UU."  # type: ignore[union-attr]
    assert es.date == main.date
    with pytest.raises(IssueError, match="no 'de' edition; this issue has en-GB, es"):
        loaded.edition("de")


def test_the_complete_translation_checks_clean(newsletter_home: Path) -> None:
    bilingual_seed(newsletter_home)
    result = run("check", "2025-04-16")
    assert result.exit_code == 0, result.stdout
    assert "not in the es edition" not in result.stdout
    assert "edition only" not in result.stdout


def test_check_reports_what_one_edition_has_and_another_lacks(newsletter_home: Path) -> None:
    add_edition(
        newsletter_home / "issues" / "2025-04-16.yaml",
        "fr",
        """subject: Bonjour
preheader: Résumé
sections:
  - story:
      headline: Titre
  - omit: true
  - heading: Focus
  - heading: Le monde
  - heading: Annonces
  - heading: Autres
  - type: links
    heading: Événements
    items: []
  - heading: Emplois
  - type: text
    heading: Seulement en français
    body: Un texte.
""",
    )
    result = run("check", "2025-04-16")
    out = result.stdout
    assert result.exit_code == 0, out
    # The lead's body was not translated: it names the main edition's line.
    assert (
        "issues/2025-04-16.yaml:39:13: warning: sections[0].story.body: not in the fr "
        "edition, which shows the en-GB text; translate it under editions.fr"
    ) in out
    assert "warning: sections[1]: left out of the fr edition" in out
    assert (
        "warning: editions.fr.sections[6]: a text section in the en-GB edition, "
        "a links section in the fr edition"
    ) in out
    assert "warning: editions.fr.sections[8]: in the fr edition only" in out
    assert "sections[0].story.kicker: not in the fr edition" in out
    assert "5:3: warning: newsletter: not in the fr edition" in out
    # A block after the omitted one is found where the edition writes it.
    lines = (newsletter_home / "issues" / "2025-04-16.yaml").read_text().splitlines()
    events = next(i for i, line in enumerate(lines, 1) if "heading: Événements" in line)
    assert f":{events + 1}:16: warning: editions.fr.sections[5].items: section 'Événements'" in out


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("date: 2025-04-17", "editions.fr.date: an edition can change only subject, preheader"),
        (
            "newsletter:\n  language: de",
            "editions.fr.newsletter.language: an edition's language is its key (fr)",
        ),
        (
            "sections:\n  - story:\n      headlne: x",
            "editions.fr.sections[0].story.headlne: unknown",
        ),
        ("subject: ''", "editions.fr.subject: string should have at least 1 character"),
        (
            "sections:\n  - story:\n      body: 'a __nlfield_email__ b'",
            "editions.fr.sections[0].story.body: contains the reserved text",
        ),
    ],
)
def test_a_broken_edition_is_a_located_error(
    newsletter_home: Path, overlay: str, message: str
) -> None:
    path = add_edition(newsletter_home / "issues" / "2025-04-16.yaml", "fr", overlay)
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("  fr:") + 2  # the overlay's first line (1-based)
    result = run("check", "2025-04-16")
    assert result.exit_code == 1
    found = [line for line in result.stderr.splitlines() if message in line]
    assert found, result.stderr
    line = int(found[0].split(":")[1])
    assert line >= start, found[0]  # located in the edition, not in the main text
    assert "Traceback" not in result.stderr


def test_an_edition_in_the_main_language_is_refused(newsletter_home: Path) -> None:
    add_edition(newsletter_home / "issues" / "2025-04-16.yaml", "en-gb", "subject: Hi")
    result = run("check", "2025-04-16")
    assert result.exit_code == 1
    assert "editions.en-gb: this is the main edition's language" in result.stderr


def test_an_existing_issue_file_stays_valid_and_has_one_edition() -> None:
    loaded = load_issue(SEED)
    assert list(loaded.editions) == ["en-GB"]


def test_new_keeps_the_editions_with_their_headings(newsletter_home: Path) -> None:
    import yaml

    bilingual_seed(newsletter_home)
    result = run("new")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((newsletter_home / "issues" / "2025-04-23.yaml").read_text("utf-8"))
    es = data["editions"]["es"]
    assert es["subject"] == "" and es["newsletter"]["title"] == "Actualización Semanal"
    assert es["sections"][1] == {"heading": "De nosotros"}
    assert "story" not in es["sections"][0]
