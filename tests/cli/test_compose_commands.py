"""newsletter build through the real CLI (in-process): the files it writes."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.helpers import run

pytestmark = pytest.mark.no_database


def test_build_writes_html_text_and_eml(newsletter_home: Path) -> None:
    result = run("build", "issues/2025-04-16.yaml")
    assert result.exit_code == 0, result.stderr
    out = Path("build") / "2025-04-16"
    assert result.stdout.splitlines()[:3] == [
        f"wrote {out / 'email.html'}",
        f"wrote {out / 'email.txt'}",
        f"wrote {out / 'email.eml'}",
    ]
    assert "HTML part: " in result.stdout and "KB as sent (Gmail clips at 102 KB)" in result.stdout
    out = newsletter_home / out
    html = (out / "email.html").read_text()
    message = email.message_from_bytes((out / "email.eml").read_bytes(), policy=email.policy.SMTP)
    assert message["To"] == "Sample Reader <reader@example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    assert html_part.get_content().replace("\r\n", "\n") == html
    assert text_part.get_content().replace("\r\n", "\n") == (out / "email.txt").read_text()
    assert all(len(line) <= 998 for line in (out / "email.eml").read_bytes().split(b"\r\n"))


def test_build_accepts_a_date_and_an_out_folder(newsletter_home: Path, tmp_path: Path) -> None:
    result = run("build", "2025-04-16", "--out", str(tmp_path / "x"))
    assert result.exit_code == 0
    assert (tmp_path / "x" / "email.eml").exists()


def test_missing_issue_file() -> None:
    result = run("build", "issues/2030-01-01.yaml")
    assert result.exit_code == 1
    assert result.stderr == (
        "issues/2030-01-01.yaml: no such issue file; list them with "
        "`ls issues/` or start one with `newsletter new`\n"
    )
