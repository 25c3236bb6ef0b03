"""Subscribers: CSV import, the subscribers commands, and the database migrations."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest

from composer.audience.subscribers import import_csv
from composer.store.database import Store
from tests.helpers import run


def test_import_validates_normalises_and_merges(newsletter_home: Path) -> None:
    source = newsletter_home / "people.csv"
    source.write_text(
        "email,name,language,lists,city\n"
        "Ana@Example.ORG,Ana Silva,es,weekly|spanish,Lima\n"
        "bad-address,Nobody,,,\n"
        'ana@example.org,,,"urgent",\n'  # a duplicate: merged
        "  bruno@example.org ,Bruno Okafor\u0301,,,\n"
        ",Empty,,,\n"
        "a@b,Short,,,\n"
        "zoe@bücher.de,Zoë,,,\n",
        encoding="utf-8",
    )
    result = run("subscribers", "import", "people.csv", "--list", "weekly")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "imported people.csv: 3 added, 1 merged into existing, 0 left unsubscribed/bounced, "
        "3 rejected",
        "rejected rows, with the reason, are in people.rejects.csv",
    ]
    assert result.stderr.splitlines() == [
        "people.csv:3: 'bad-address' is not a valid email address: An email address must have "
        "an @-sign.",
        "people.csv:6: the email address is empty",
        "people.csv:7: 'a@b' is not a valid email address: The part after the @-sign is not "
        "valid. It should have a period.",
        "warning: people.csv:4: ana@example.org is the same address as Ana@Example.ORG: "
        "merged into one subscriber",
    ]
    with (newsletter_home / "people.rejects.csv").open(newline="") as f:
        rejects = list(csv.reader(f))
    assert rejects[0] == ["line", "reason", "email", "name", "language", "lists", "city"]
    assert [r[0] for r in rejects[1:]] == ["3", "6", "7"]
    listing = run("subscribers", "list").stdout.splitlines()
    assert listing == [
        "ana@example.org\tactive\tAna Silva\tspanish,urgent,weekly",
        "bruno@example.org\tactive\tBruno Okafor\u0301\tweekly".replace("r\u0301", "ŕ"),
        "zoe@xn--bcher-kva.de\tactive\tZoë\tweekly",
    ]


def test_mailchimp_export_with_bom_and_semicolons(newsletter_home: Path) -> None:
    source = newsletter_home / "mailchimp.csv"
    source.write_bytes(
        "\ufeff".encode()
        + (
            b'"Email Address";"First Name";"Last Name";"MEMBER_RATING";"TAGS";"STATUS"\n'
            b'"kemi@example.org";"Kemi";"Rossi";"2";"""donor"",""press""";"subscribed"\n'
            b'"old@example.org";"Old";"Reader";"1";"";"cleaned"\n'
        )
    )
    result = run("subscribers", "import", "mailchimp.csv")
    assert result.exit_code == 0, result.output
    assert "2 added" in result.stdout
    export = run("subscribers", "export")
    rows = list(csv.DictReader(export.stdout.splitlines()))
    kemi = next(r for r in rows if r["email"] == "kemi@example.org")
    assert kemi["name"] == "Kemi Rossi" and kemi["lists"] == "donor|press"
    assert kemi["attributes"] == '{"MEMBER_RATING": "2"}' and kemi["status"] == "active"
    assert next(r for r in rows if r["email"] == "old@example.org")["status"] == "bounced"


def test_suppressed_addresses_stay_suppressed_on_reimport(newsletter_home: Path) -> None:
    source = newsletter_home / "list.csv"
    source.write_text("email\nana@example.org\nbo@example.org\n")
    run("subscribers", "import", str(source))
    assert (
        run("subscribers", "unsubscribe", "ANA@example.org").stdout
        == "ana@example.org: unsubscribed\n"
    )
    again = run("subscribers", "import", str(source))
    assert "0 added, 1 merged into existing, 1 left unsubscribed/bounced" in again.stdout
    assert run("subscribers", "list", "--status", "active").stdout == "bo@example.org\tactive\t\t\n"
    assert run("subscribers", "count").stdout.splitlines() == [
        "active               1",
        "unsubscribed         1",
        "bounced              0",
        "complained           0",
        "total                2",
    ]


def test_add_remove_and_errors(newsletter_home: Path) -> None:
    assert (
        run(
            "subscribers",
            "add",
            "Mei@Example.org",
            "--name",
            "Mei Sato",
            "--list",
            "a",
            "--list",
            "b",
        ).stdout
        == "mei@example.org: added (status active)\n"
    )
    assert (
        run("subscribers", "add", "mei@example.org", "--name", "Mei S.").stdout
        == "mei@example.org: updated (status active)\n"
    )
    bad = run("subscribers", "add", "mei@")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: 'mei@' is not a valid email address: ")
    assert (
        run("subscribers", "list", "--list", "b").stdout == "mei@example.org\tactive\tMei S.\ta,b\n"
    )
    assert run("subscribers", "list", "--status", "gone").stderr == (
        "Error: status 'gone' is not one of active, unsubscribed, bounced, complained\n"
    )
    assert run("subscribers", "remove", "mei@example.org").stdout == "mei@example.org: removed\n"
    missing = run("subscribers", "remove", "mei@example.org")
    assert missing.exit_code == 1
    assert missing.stderr == (
        "Error: mei@example.org is not a subscriber; see `newsletter subscribers list`\n"
    )
    no_file = run("subscribers", "import", "nosuch.csv")
    assert (
        no_file.exit_code == 1
        and no_file.stderr == "Error: nosuch.csv: cannot read: No such file or directory\n"
    )
    no_email = newsletter_home / "x.csv"
    no_email.write_text("name,city\nA,B\n")
    result = run("subscribers", "import", "x.csv")
    assert (
        result.stderr == "Error: x.csv:1: no email column; name one 'email' (found: name, city)\n"
    )


def test_export_to_a_file(newsletter_home: Path) -> None:
    run("subscribers", "add", "a@example.org", "--name", "A, with comma")
    result = run("subscribers", "export", "out.csv")
    assert result.exit_code == 0 and result.stdout == "exported 1 subscribers to out.csv\n"
    rows = list(csv.DictReader((newsletter_home / "out.csv").open(newline="")))
    assert rows[0]["name"] == "A, with comma"


@pytest.mark.sqlite_only
def test_a_broken_database_file_is_a_clear_error(newsletter_home: Path) -> None:
    (newsletter_home / "newsletter.db").write_bytes(b"this is not a database" * 100)
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert (
        result.stderr.startswith("Error: ")
        and "newsletter.db: cannot open the database" in result.stderr
    )
    assert "Traceback" not in result.output


def _import_peak(tmp_path: Path, rows: int) -> int:
    source = tmp_path / f"big-{rows}.csv"
    with source.open("w") as f:
        f.write("email,name,city\n")
        for i in range(rows):
            f.write(f"user{i}@example.org,User {i},City {i % 97}\n")
    with Store(tmp_path / f"big-{rows}.db") as store:
        tracemalloc.start()
        report = import_csv(store, source, None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert report.added == rows
    return peak


def test_import_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small = _import_peak(tmp_path, 4_000)
    large = _import_peak(tmp_path, 40_000)
    assert large < small * 1.5, (small, large)


def test_rows_merged_by_spelling_are_each_warned_about(newsletter_home: Path) -> None:
    run("subscribers", "add", "carol@example.org")
    source = newsletter_home / "people.csv"
    source.write_text(
        "email,name\nBob@Example.COM,Bob\nbob@example.com,Bobby\n"
        "CAROL@example.org,Carol\nbob@example.com,Again\ndan@example.org,Dan\n"
    )
    result = run("subscribers", "import", str(source))
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {source}:3: bob@example.com is the same address as Bob@Example.COM: "
        "merged into one subscriber",
        f"warning: {source}:4: CAROL@example.org is the same address as carol@example.org: "
        "merged into one subscriber",
        f"warning: {source}:5: bob@example.com is the same address as Bob@Example.COM: "
        "merged into one subscriber",
    ]
    assert "2 added, 3 merged into existing" in result.stdout
