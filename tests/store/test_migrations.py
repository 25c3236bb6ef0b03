"""Migrations: named steps, applied in order from a blank or an older database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from composer.errors import StoreError
from composer.store.database import Store
from composer.store.migrations import MIGRATIONS


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
        assert step.name and step.statements
        for statement in step.statements:
            assert sqlite3.complete_statement(statement + ";")
            assert ";" not in statement.rstrip().rstrip(";")


def test_a_missing_database_is_not_created_by_readers(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database yet"):
        Store(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()
