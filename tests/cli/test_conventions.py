"""CLI conventions: --version, -h, full help, -v and --dir anywhere, the newsletter's
folder found by walking up, and every command's bad input as a one-line error with the
right exit status and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer import __version__
from tests.helpers import run

NOT_A_NEWSLETTER = "is not in a newsletter's folder (no issues/ here or above)"


def test_version_and_short_help() -> None:
    assert run("--version").stdout == f"newsletter-composer {__version__}\n"
    assert run("-h").stdout == run("--help").stdout
    assert run("subscribers", "-h").exit_code == 0
    assert "Usage: newsletter send" in run("send", "-h").stdout


def test_help_gives_each_command_its_whole_description() -> None:
    text = run("--help").stdout
    assert "...\n" not in text.partition("Commands:")[2]
    joined = " ".join(text.split())
    assert "Send an issue to the active subscribers; run again to resume a stopped send." in joined
    assert "Create a newsletter: .env with a fresh secret key" in joined


def test_verbose_anywhere_shows_our_log_lines_only() -> None:
    for args in (
        ["-v", "check", "2025-04-16"],
        ["check", "2025-04-16", "-v"],
        ["check", "--verbose", "2025-04-16"],
    ):
        result = run(*args)
        assert result.exit_code == 0, result.stderr
        lines = [line for line in result.stderr.splitlines() if " DEBUG " in line]
        assert any(" composer.render.pipeline DEBUG rendered " in line for line in lines)
        assert lines and all(" composer." in line for line in lines), lines[:5]
    quiet = run("check", "2025-04-16")
    assert " DEBUG " not in quiet.stderr


@pytest.mark.sqlite_only
def test_the_newsletter_folder_is_found_from_below_or_named(
    newsletter_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEWSLETTER_HOME")
    monkeypatch.chdir(newsletter_home / "issues")
    assert run("check", "2025-04-16").exit_code == 0
    assert run("subscribers", "add", "a@example.org").exit_code == 0
    assert (newsletter_home / "newsletter.db").exists()
    assert not (newsletter_home / "issues" / "newsletter.db").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for args in (
        ["--dir", str(newsletter_home), "subscribers", "count"],
        ["subscribers", "count", "--dir", str(newsletter_home)],
        ["subscribers", "count", f"--dir={newsletter_home}"],
    ):
        result = run(*args)
        assert result.exit_code == 0 and "active" in result.stdout, result.stderr
    monkeypatch.setenv("NEWSLETTER_HOME", str(newsletter_home))
    assert run("subscribers", "count").exit_code == 0
    assert list(elsewhere.iterdir()) == []


def test_outside_a_newsletter_every_command_stops_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEWSLETTER_HOME")
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    commands = [
        ["build", "2025-04-16"],
        ["check", "2025-04-16"],
        ["new"],
        ["status", "2025-04-16"],
        ["send", "2025-04-16", "--yes"],
        ["preview", "2025-04-16"],
        ["archive"],
        ["serve"],
        ["theme", "copy", "default"],
        ["theme", "list"],
        ["subscribers", "count"],
        ["subscribers", "list"],
        ["subscribers", "add", "a@example.org"],
        ["subscribers", "import", "x.csv"],
        ["subscribers", "export"],
        ["subscribers", "remove", "a@example.org"],
        ["subscribers", "unsubscribe", "a@example.org"],
        ["subscribers", "unsubscribe-mailbox", "box"],
    ]
    for args in commands:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1 and NOT_A_NEWSLETTER in result.stderr, args
        assert result.stdout == "", args
    assert list(outside.iterdir()) == []
    missing = run("--dir", str(tmp_path / "nope"), "subscribers", "count")
    assert missing.exit_code == 1 and "no such folder" in missing.stderr


# (arguments, exit status, a word of the message). Exit 1: one line on stderr;
# exit 2: Click's usage error. Never a traceback.
BAD_INPUT = [
    (["build", "2030-01-01"], 1, "no such issue file"),
    (["build", "not-a-date"], 1, "not an issue file nor a date"),
    (["build", "2025-04-16", "--out", "plain-file/out"], 1, "cannot write the build"),
    (["check", "issues/nosuch.yaml"], 1, "no such issue file"),
    (["check", "plain-file"], 1, "YAML"),
    (["new", "--date", "someday"], 2, "is not a date"),
    (["new", "--date", "2025-04-16"], 1, "no earlier issue"),
    (["schema", "extra"], 2, "unexpected extra argument"),
    (["status", "2025-04-16"], 1, "no database yet"),
    (["send", "2030-01-01", "--yes"], 1, "no such issue file"),
    (["send", "2025-04-16", "--connections", "0"], 2, "--connections"),
    (["send", "2025-04-16", "--rate", "-1"], 2, "--rate"),
    (["send", "2025-04-16", "--list", "nosuch", "--yes"], 1, "no list named"),
    (["preview", "2030-01-01"], 1, "no such issue file"),
    (["preview", "2025-04-16", "--port", "0"], 2, "--port"),
    (["serve", "--port", "70000"], 2, "--port"),
    (["serve", "--host", "no.such.host.invalid"], 1, "unknown address"),
    (["archive", "--out", "plain-file/site"], 1, "cannot write the archive"),
    (["theme", "copy", "nosuch"], 1, "no bundled theme named"),
    (["theme", "copy", "default", "--as", "Bad Name"], 2, "--as"),
    (["init", "plain-file"], 1, "is not a folder"),
    (["init", "."], 1, "already"),
    (["init", "fresh", "--title", ""], 1, "--title"),
    (["subscribers", "import", "nosuch.csv"], 1, "cannot read"),
    (["subscribers", "import", "issues"], 1, "cannot read"),
    (["subscribers", "import", "plain-file"], 1, "no email column"),
    (["subscribers", "add", "not-an-address"], 1, "not a valid email address"),
    (["subscribers", "add", "a@example.org", "--unknown"], 2, "No such option"),
    (["subscribers", "list", "--status", "gone"], 1, "is not one of"),
    (["subscribers", "remove", "nobody@example.org"], 1, "is not a subscriber"),
    (["subscribers", "unsubscribe", "nobody@example.org"], 1, "is not a subscriber"),
    (["subscribers", "export", "plain-file/out.csv"], 1, "cannot write the export"),
    (["subscribers", "export", "issues"], 1, "is a folder"),
    (["subscribers", "unsubscribe-mailbox", "nosuch"], 1, "no such Maildir"),
    (["nosuch-command"], 2, "No such command"),
    (["--dir"], 2, "--dir needs a folder"),
]


@pytest.mark.parametrize(
    ("args", "status", "words"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT]
)
def test_bad_input_is_one_clear_line(
    newsletter_home: Path, args: list[str], status: int, words: str
) -> None:
    (newsletter_home / "plain-file").write_text("a plain file, not a folder\n")
    if args[0] == "subscribers" and args[1] in (
        "remove",
        "unsubscribe",
        "export",
        "list",
        "unsubscribe-mailbox",
    ):
        run("subscribers", "add", "someone@example.org")
    result = run(*args)
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    assert words in result.stderr, result.stderr
    if status == 1:
        assert result.stderr.count("\n") == 1, result.stderr


def test_a_real_process_prints_no_traceback(newsletter_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SMTP_"))}
    for args, status in (
        (["build", "2030-01-01"], 1),
        (["status", "2025-04-16"], 1),
        (["send", "2025-04-16", "--connections", "x"], 2),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "composer", *args],
            cwd=newsletter_home,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == status, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_status_of_an_issue_never_sent_is_an_error(newsletter_home: Path) -> None:
    run("subscribers", "add", "a@example.org")
    result = run("status", "2025-04-16")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: issue 2025-04-16 has not been sent from ")
    assert run("send", "2025-04-16", "--yes").exit_code == 0
    sent = run("status", "2025-04-16")
    assert sent.exit_code == 0 and "sent" in sent.stdout
