"""The issue file: check's findings with file:line:col, schema errors, `new`, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import run, write_issue

pytestmark = pytest.mark.no_database


def test_check_seed_passes_with_warnings() -> None:
    result = run("check", "2025-04-16")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "issues/2025-04-16.yaml: 0 error(s), 10 warning(s)"
    assert (
        "issues/2025-04-16.yaml:257:12: warning: sections[7].items: section 'Jobs' is empty"
        in result.stdout
    )


def test_check_reports_each_lint_error_with_location(newsletter_home: Path) -> None:
    write_issue(
        newsletter_home,
        "2025-04-20.yaml",
        [
            ("date: 2025-04-16", "date: 2025-04-15"),
            (
                "url: https://www.business-humanrights.org/en/blog/hidden",
                "url: javascript:alert(1)//",
            ),
            ("companies: [Blackrock]", "companies: []"),
            (
                "      kicker: USA\n",
                "      kicker: USA\n      image: {src: 'https://www.business-humanrights.org/a.png'}\n",
            ),
            (
                "  - type: text\n    heading: Events\n    body: Details",
                "  - type: text\n    heading: Events\n    body: '' #",
            ),
        ],
    )
    result = run("check", "issues/2025-04-20.yaml")
    assert result.exit_code == 1
    out = result.stdout
    assert (
        "issues/2025-04-20.yaml:36:14: error: sections[0].story.image.alt: image has no alt "
        "text; describe it, or set decorative: true"
    ) in out
    assert (
        "sections[1].items[1].url: link 'javascript:alert(1)//-risks-for-migrant-workers-in-"
        "conflict-zones/' is not http(s) or mailto"
    ) in out
    assert "sections[2].topics[1].replies[0].companies: right-of-reply note names no company" in out
    assert "26:7: error: date: date 2025-04-15 does not match the file name 2025-04-20.yaml" in out
    assert "warning: sections[6].body: section 'Events' is empty" in out
    assert result.stderr.strip() == "issues/2025-04-20.yaml: 4 error(s), 10 warning(s)"


def _big_issue(home: Path, name: str, paragraphs: int) -> Path:
    filler = "        " + "Additional reporting paragraph with enough words to add weight. " * 6
    body = "\n\n".join([filler] * paragraphs)
    return write_issue(
        home,
        name,
        [
            ("        Privacy groups warn", body + "\n\n        Privacy groups warn"),
            ("date: 2025-04-16", f"date: {name[:10]}"),
        ],
    )


def test_check_warns_near_and_fails_over_gmail_clip(newsletter_home: Path) -> None:
    _big_issue(newsletter_home, "2025-05-01.yaml", 50)
    near = run("check", "2025-05-01")
    assert near.exit_code == 0
    assert (
        "Gmail clips messages over 102 KB, hiding the footer and its unsubscribe link: "
        "you are close" in near.stdout
    )
    _big_issue(newsletter_home, "2025-05-02.yaml", 120)
    over = run("check", "2025-05-02")
    assert over.exit_code == 1
    assert "error: sections: HTML part is" in over.stdout and "shorten the issue" in over.stdout


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (
            [("subject: Clearview", "subject: [Clearview")],
            ["issues/2025-04-16.yaml:28:10: YAML syntax error: did not find expected ',' or ']'"],
        ),
        (
            [("      headline: Clearview", "      headlne: Clearview")],
            [
                "issues/2025-04-16.yaml:35:7: sections[0].story.headline: required field is missing; "
                "add it",
                "issues/2025-04-16.yaml:36:7: sections[0].story.headlne: unknown field; check the "
                "spelling (see `newsletter schema`)",
            ],
        ),
        (
            [("      sources: [Mother Jones]", "      sources: 5")],
            [
                "issues/2025-04-16.yaml:38:16: sections[0].story.sources: input should be a valid list "
                "(got 5)"
            ],
        ),
        (
            [("- status: no_response", "- status: silent")],
            [
                "issues/2025-04-16.yaml:102:21: sections[2].topics[1].replies[0].status: input should "
                "be 'responded', 'no_response' or 'statement' (got 'silent')"
            ],
        ),
        (
            [("  - type: text", "  - type: poem")],
            [
                "issues/2025-04-16.yaml:251:11: sections[6].type: type must be one of lead, links, "
                "focus, regions, text"
            ],
        ),
        (
            [("preheader: >-", "subject: again\npreheader: >-")],
            ["issues/2025-04-16.yaml:28:1: subject: duplicate key; keep only one"],
        ),
    ],
)
def test_invalid_issue_files_get_one_line_per_problem(
    newsletter_home: Path, replace: list[tuple[str, str]], expected: list[str]
) -> None:
    write_issue(newsletter_home, "2025-04-16.yaml", replace)
    for command in ("check", "build"):
        result = run(command, "issues/2025-04-16.yaml")
        assert result.exit_code == 1
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert [line[: len(want)] for line, want in zip(lines, expected, strict=True)] == expected
        assert "Traceback" not in result.stderr
    assert not (newsletter_home / "build").exists()  # nothing half-written


def test_new_starts_from_the_latest_issue(newsletter_home: Path) -> None:
    result = run("new")
    assert result.exit_code == 0
    assert result.stdout == (
        "started issues/2025-04-23.yaml; fill it in, then run: "
        "newsletter check issues/2025-04-23.yaml\n"
    )
    import yaml

    data = yaml.safe_load((newsletter_home / "issues" / "2025-04-23.yaml").read_text())
    assert data["date"].isoformat() == "2025-04-23" and data["subject"] == ""
    assert data["newsletter"]["title"] == "Weekly Update"
    assert [s["type"] for s in data["sections"]] == [
        "lead",
        "links",
        "focus",
        "regions",
        "links",
        "links",
        "text",
        "links",
    ]
    assert data["sections"][0]["story"] == {
        "kicker": "",
        "headline": "",
        "url": None,
        "sources": [],
        "body": "",
    }
    regions = data["sections"][3]["regions"]
    assert [r["name"] for r in regions][:2] == ["International", "Africa"]
    assert regions[1]["spotlight"]["headline"] == "" and regions[1]["other_news"] == []
    assert regions[1]["explore"]["title"] == "Explore all news from Africa ➡️"
    # The new file is not valid until filled in: check says what is missing.
    check = run("check", "2025-04-23")
    assert check.exit_code == 1
    assert "subject: string should have at least 1 character" in check.stderr
    # A second `new` starts the week after; the same date twice is refused.
    assert run("new").stdout.startswith("started issues/2025-04-30.yaml")
    again = run("new", "--date", "2025-04-23")
    assert again.exit_code == 1
    assert again.stderr == (
        "Error: issues/2025-04-23.yaml already exists; edit it, or pass another --date\n"
    )
    assert run("new", "--date", "23/04/2025").exit_code == 2


def test_schema_is_json_schema_of_the_format() -> None:
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"newsletter", "date", "subject", "preheader", "sections"}
    assert schema["additionalProperties"] is False
    assert {"Story", "Region", "Reply", "Link"} <= set(schema["$defs"])


def test_committed_schema_matches_the_model() -> None:
    committed = REPO / "docs" / "issue.schema.json"
    assert json.loads(committed.read_text()) == json.loads(run("schema").stdout), (
        "regenerate with: newsletter schema > docs/issue.schema.json"
    )


def test_check_warns_of_vague_links_and_empty_headlines(newsletter_home: Path) -> None:
    write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "      headline: Clearview AI’s facial recognition tech allegedly designed for "
                "surveillance of marginalised groups\n",
                "      headline: ''\n      see_also: '[Click here.](https://example.org/a)'\n",
            )
        ],
    )
    out = run("check", "2025-04-16").stdout
    assert "sections[0].story.headline: headline is empty; write one" in out, out
    assert "sections[0].story.see_also: link text 'Click here.' says nothing out of context" in out
    assert "sections[6].body: link text 'here' says nothing out of context" in out
