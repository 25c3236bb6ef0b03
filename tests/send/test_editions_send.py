"""A send of an issue with editions: each subscriber gets the edition of their
language, through a real SMTP server on loopback; the plan and the summary
count per edition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import normalise
from tests.helpers import bilingual_seed, run
from tests.send.test_send import use
from tests.smtp_server import Handler, running


def _words(text: str) -> str:
    return normalise(re.sub(r"<[^>]+>", " ", text))


def test_each_subscriber_gets_the_edition_of_their_language(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    bilingual_seed(newsletter_home)
    people = {
        "ana@example.org": ("Ana", "es"),
        "ben@example.org": ("Ben", "en"),
        "carla@example.org": ("Carla", "es-MX"),
        "dmitri@example.org": ("Dmitri", "ru"),  # no Russian edition: the main one
    }
    for email, (name, language) in people.items():
        assert (
            run("subscribers", "add", email, "--name", name, "--language", language).exit_code == 0
        )
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--yes")
        again = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 0, result.output
    assert "Editions:   en-GB 2, es 2" in result.stdout
    assert "sent by edition: en-GB 2, es 2" in result.stdout
    assert handler.recipients() == dict.fromkeys(people, 1)

    for email, (_, language) in people.items():
        msg = next(m for m in handler.received if m.rcpt_tos == [email]).message()
        html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
        assert html_part is not None and text_part is not None
        html, text = html_part.get_content(), text_part.get_content()
        spanish = language.startswith("es")
        if spanish:
            assert msg["Subject"].startswith("Tecnología de vigilancia de Clearview AI")
            assert msg["Content-Language"] == "es"
            assert msg["From"].startswith("Actualización Semanal <")
            assert msg["List-Id"].startswith("Actualización Semanal <weekly-update.")
            assert '<html lang="es"' in html
            expected = [
                "16 de abril de 2025",  # the date
                "una investigación ha revelado que clearview ai",  # the lead story
                "empresas y derechos humanos en el foco",  # a section heading
                "destacado:",  # the theme's words
                "este correo se envió a " + email,  # the footer
                "darse de baja",
                "ver en el navegador",
                "recibe la actualización semanal porque se suscribió",
            ]
            absent = ["april 2025", "unsubscribe", "view in browser", "an investigation"]
            assert "/issues/2025-04-16/es/" in html
        else:
            assert msg["Subject"].startswith("Clearview AI surveillance tech")
            assert msg["Content-Language"] == "en-GB"
            assert msg["From"].startswith("Weekly Update <")
            expected = [
                "16 april 2025",
                "an investigation has revealed that clearview ai",
                "spotlight:",
                "this email was sent to " + email,
                "unsubscribe",
                "view in browser",
            ]
            absent = ["abril", "darse de baja", "una investigación"]
            assert "/issues/2025-04-16/es/" not in html
        for part in (_words(html), normalise(re.sub(r"<(https?|mailto):[^>]*>", " ", text))):
            for phrase in expected:
                assert phrase in part, (email, phrase)
            for phrase in absent:
                assert phrase not in part, (email, phrase)
    # One delivery log for the issue, whatever the edition: nobody gets it twice.
    assert again.exit_code == 0, again.output
    assert "nothing to send: every active subscriber has this issue" in again.stdout


def test_an_edited_edition_counts_as_an_edited_issue(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    path = bilingual_seed(newsletter_home)
    run("subscribers", "add", "ana@example.org", "--language", "es")
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        assert run("send", "2025-04-16", "--yes", "--limit", "1").exit_code == 0
        run("subscribers", "add", "ben@example.org", "--language", "en")
        source = path.read_text(encoding="utf-8")
        path.write_text(source.replace("title: Actualización Semanal", "title: Boletín"), "utf-8")
        result = run("send", "2025-04-16", "--yes")
    assert result.exit_code == 1
    assert "changed after sending it started" in result.stderr


def test_build_writes_each_edition_and_one_on_request(newsletter_home: Path) -> None:
    bilingual_seed(newsletter_home)
    result = run("build", "2025-04-16")
    assert result.exit_code == 0, result.output
    out = newsletter_home / "build" / "2025-04-16"
    assert "Darse de baja" in (out / "es" / "email.html").read_text(encoding="utf-8")
    assert "Unsubscribe" in (out / "email.html").read_text(encoding="utf-8")
    assert "HTML part (es):" in result.stdout
    only = run("build", "2025-04-16", "--edition", "es", "--out", "only-es")
    assert only.exit_code == 0, only.output
    assert (
        (newsletter_home / "only-es" / "email.txt")
        .read_text(encoding="utf-8")
        .startswith("Actualización Semanal\n16 de abril de 2025 · ")
    )
    assert not (newsletter_home / "only-es" / "es").exists()
    missing = run("build", "2025-04-16", "--edition", "de")
    assert missing.exit_code == 1
    assert "no 'de' edition; this issue has en-GB, es" in missing.stderr


def test_a_test_copy_of_each_edition(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    bilingual_seed(newsletter_home)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, server.env())
        result = run("send", "2025-04-16", "--test", "ed@example.org", "--edition", "es")
        assert result.exit_code == 0, result.output
        alone = run("send", "2025-04-16", "--edition", "es")
    msg = handler.received[0].message()
    assert msg["Subject"].startswith("[TEST] Tecnología de vigilancia")
    html = msg.get_body(("html",))
    assert html is not None and "/issues/2025-04-16/es/" in html.get_content()
    assert alone.exit_code == 2 and "goes with --test" in alone.stderr
