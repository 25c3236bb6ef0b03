"""Hostile issue files are read with bounded work and always get a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import IssueError
from composer.issue.load import MAX_TEXT_CHARS, parse_issue
from tests.conftest import SEED_ISSUE
from tests.helpers import run

pytestmark = pytest.mark.no_database

PATH = Path("issues/2025-04-16.yaml")
LAUGHS = (
    "\n".join(
        ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    )
    + "\n"
)

HOSTILE = [
    ("billion laughs", LAUGHS, "anchors and aliases"),
    ("self-reference", "a: &x [*x]\n", "anchors and aliases"),
    ("int tag on text", 'date: !!int "abc"\n', "cannot read 'abc' as int"),
    ("bad timestamp", 'date: !!timestamp "x"\n', "cannot read 'x' as timestamp"),
    ("custom tag", "subject: !custom x\n", "the tag !custom is not allowed"),
    ("python tag", "subject: !!python/name:os.system x\n", "is not allowed"),
    ("binary tag", "subject: !!binary aGVsbG8=\n", "is not allowed"),
    ("huge integer", "date: " + "9" * 5000 + "\n", "cannot read '9999"),
    ("set", "subject: !!set {a, b}\n", "is not allowed"),
    ("deep nesting", "a: " + "[" * 2000 + "]" * 2000 + "\n", "YAML syntax error"),
    ("list key", "? [a, b]\n: c\n", "a field name must be plain text"),
    ("not a mapping", "- a\n- b\n", "must be a YAML mapping"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("name", "source", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_yaml_gets_a_located_error(name: str, source: str, words: str) -> None:
    with pytest.raises(IssueError) as caught:
        parse_issue(source.encode(), PATH)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(f"{PATH}:") and problem.split(":")[1].isdigit(), problem
    assert words in problem


@pytest.mark.timeout(60)
def test_a_huge_story_body_is_refused_with_its_place(newsletter_home: Path) -> None:
    issue = newsletter_home / "issues" / "2025-04-16.yaml"
    source = issue.read_text()
    marker = "        An investigation has revealed"
    assert marker in source
    big = source.replace(marker, "        " + "x" * (MAX_TEXT_CHARS + 10) + "\n\n" + marker, 1)
    issue.write_text(big)
    result = run("check", "2025-04-16")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "a field holds at most 50,000" in result.stderr
    line = big[: big.index("x" * 100)].count("\n")  # the line of its "body: |"
    assert f"2025-04-16.yaml:{line}:" in result.stderr
    # A 50 MB file is refused before it is read.
    issue.write_bytes(b"subject: x\nbody: |\n" + b"  word word word\n" * 3_200_000)
    for command in ("check", "build", "send"):
        args = ["--yes"] if command == "send" else []
        refused = run(command, "2025-04-16", *args)
        assert refused.exit_code == 1 and "an issue file is at most 1 MB" in refused.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                *"ab:- \n[]{}&*!#|>'\"?,%@`0\t",
                "!!int ",
                "&a ",
                "*a",
                "!!timestamp ",
                "date: ",
                "sections: ",
            ]
        ),
        max_size=60,
    ).map("".join)
)
def test_any_text_loads_or_gets_a_located_error(source: str) -> None:
    try:
        parse_issue(source.encode(), PATH)
    except IssueError as exc:
        assert all(p.startswith(f"{PATH}:") for p in exc.problems)


def test_the_seed_still_loads() -> None:
    assert parse_issue(SEED_ISSUE.read_bytes(), SEED_ISSUE).issue.slug == "2025-04-16"
