"""The shared SQLite database: WAL on disk or in memory, per-component migrations, durable transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pensieve.persistence.database import Database, DatabaseError
from pensieve.settings_sections import PersistenceSettings

STEPS = ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)", "ALTER TABLE notes ADD COLUMN at REAL"]


def test_in_memory_unless_sqlite_is_asked_for(tmp_path: Path) -> None:
    assert not Database.open(PersistenceSettings(data_dir=tmp_path)).persistent
    on_disk = Database.open(PersistenceSettings(data_dir=tmp_path, persist="sqlite"))
    assert on_disk.persistent and on_disk.path == tmp_path / "pensieve.db"
    assert on_disk.query("PRAGMA journal_mode")[0][0] == "wal"
    on_disk.close()


def test_migrations_run_once_per_component_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "pensieve.db"
    database = Database(path)
    assert database.migrate("notes", STEPS[:1]) == 1
    with database.transaction() as cursor:
        cursor.execute("INSERT INTO notes (text) VALUES ('kept')")
    database.close()
    reopened = Database(path)
    assert reopened.migrate("notes", STEPS) == 2  # only the new step runs
    assert [tuple(row) for row in reopened.query("SELECT text, at FROM notes")] == [("kept", None)]
    assert reopened.migrate("other", ["CREATE TABLE other (x)"]) == 1
    reopened.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    database = Database(tmp_path / "pensieve.db")
    database.migrate("notes", STEPS)
    with pytest.raises(DatabaseError, match="newer than this Pensieve knows"):
        database.migrate("notes", STEPS[:1])


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    database = Database(tmp_path / "pensieve.db")
    database.migrate("notes", STEPS)
    with pytest.raises(sqlite3.IntegrityError), database.transaction() as cursor:
        cursor.execute("INSERT INTO notes (text) VALUES ('half')")
        cursor.execute("INSERT INTO notes (text) VALUES (NULL)")
    assert database.query("SELECT COUNT(*) FROM notes")[0][0] == 0
