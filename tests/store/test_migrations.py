"""Migrations: named steps, applied in order from a blank or an older database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from composer.errors import StoreError
from composer.store.database import Store
from composer.store.migrations import (
    CHECKS_AS_COMPARISONS,
    MIGRATIONS,
    checks_as_comparisons,
)


def test_migrations_from_a_blank_database_and_an_older_one(tmp_path: Path) -> None:
    with Store(tmp_path / "new.db") as store:
        versions = [r[0] for r in store.query("SELECT version FROM schema_migrations")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
    # A database made when only migration 1 existed gets the rest.
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for statement in MIGRATIONS[0].statements:
        old.execute(statement)
    old.execute("INSERT INTO schema_migrations VALUES (1, 'then')")
    old.execute(
        "INSERT INTO subscribers (email, created_at, updated_at) VALUES "
        "('kept@example.org', 'then', 'then')"
    )
    old.commit()
    old.close()
    with Store(tmp_path / "old.db") as store:
        assert store.query("SELECT max(version) FROM schema_migrations")[0][0] == len(MIGRATIONS)
        assert store.subscriber("kept@example.org") is not None
        store.query("SELECT * FROM events")
    newer = sqlite3.connect(tmp_path / "old.db")
    newer.execute("INSERT INTO schema_migrations VALUES (99, 'future')")
    newer.commit()
    newer.close()
    with pytest.raises(StoreError, match="made by a newer newsletter-composer"):
        Store(tmp_path / "old.db")


def test_each_step_is_named_and_statements_are_single() -> None:
    for step in MIGRATIONS:
        assert step.name and (step.statements or step.sqlite)
        for statement in step.statements:
            assert sqlite3.complete_statement(statement + ";")
            assert ";" not in statement.rstrip().rstrip(";")


def test_a_missing_database_is_not_created_by_readers(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database yet"):
        Store(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_checks_become_comparisons_with_the_rows_and_their_rules_kept(tmp_path: Path) -> None:
    """The step before CHECKS_AS_COMPARISONS leaves IN lists; the step rewrites
    them in place. Rows stay, a value outside the list is still refused (by
    this connection and by one opened before the change), and SQLite finds
    the file sound."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    before = MIGRATIONS.index(CHECKS_AS_COMPARISONS)
    for version, step in enumerate(MIGRATIONS[:before], start=1):
        for statement in step.statements:
            old.execute(statement)
        old.execute("INSERT INTO schema_migrations VALUES (?, 'then')", (version,))
    old.execute(
        "INSERT INTO subscribers (email, status, created_at, updated_at) VALUES "
        "('kept@example.org', 'bounced', 'then', 'then')"
    )
    old.execute("INSERT INTO sends VALUES ('2025-04-16', 'd', 's', 'then', 'then')")
    old.execute(
        "INSERT INTO deliveries (issue, subscriber_id, state) VALUES ('2025-04-16', 1, 'sent')"
    )
    old.commit()
    tables = "SELECT sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK%'"
    assert all(" IN (" in sql for (sql,) in old.execute(tables))
    with Store(path) as store:
        checks = [sql for (sql,) in store.query(tables)]
        assert len(checks) == 4 and not any(" IN (" in sql for sql in checks)
        assert "CHECK (state = 'pending' OR state = 'sending' OR state = 'sent'" in "".join(checks)
        assert store.query("SELECT email, status FROM subscribers") == [
            ("kept@example.org", "bounced")
        ]
        assert store.query("PRAGMA integrity_check") == [("ok",)]
        with pytest.raises(StoreError, match="CHECK constraint failed"):
            store.query("UPDATE deliveries SET state = 'lost'")
    # The connection opened before the change reloads the schema and keeps the rule.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed: status = "):
        old.execute("UPDATE subscribers SET status = 'gone'")
    old.execute("UPDATE subscribers SET status = 'active'")
    old.commit()
    old.close()


def test_rewriting_the_checks_keeps_every_value_and_quote() -> None:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE t (a TEXT CHECK (a IN ('x', 'it''s, or',\n 'y')), b TEXT CHECK (b IN ('z')),"
        " c INTEGER CHECK (c IN (1, 2)))"
    )
    checks_as_comparisons(db)
    (sql,) = db.execute("SELECT sql FROM sqlite_master").fetchone()
    assert "CHECK (a = 'x' OR a = 'it''s, or' OR a = 'y')" in sql and "CHECK (b = 'z')" in sql
    assert "CHECK (c IN (1, 2))" in sql  # not a list of strings: left as it was
    db.execute("INSERT INTO t VALUES ('it''s, or', 'z', 1)")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO t VALUES ('it''s', 'z', 1)")
