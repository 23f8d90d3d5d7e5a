"""One SQLite database shared by the stores that keep conversations and file records.

With PENSIEVE_PERSIST=sqlite it is `data/pensieve.db` in WAL mode with `synchronous=FULL`: a write the API
acknowledged is on disk and survives `kill -9` (and a power cut). Otherwise it lives in memory and is
gone at shutdown, as the founding document asks: the stores run the same code either way.

Each component (sessions, files) keeps its own numbered migrations; `migrate(component, steps)` applies
the ones this database has not seen yet, each in a transaction, and records the version reached in
`schema_versions`. A database newer than this code (a downgrade) is refused instead of guessed at.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pensieve.settings_sections import PersistenceSettings

DATABASE_FILE = "pensieve.db"


class DatabaseError(Exception):
    """The database cannot be used (a newer schema, a damaged file)."""


class Database:
    """A thread-safe SQLite connection (stores call it from worker threads) with per-component migrations."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            str(path) if path is not None else ":memory:", check_same_thread=False, isolation_level=None
        )
        self._connection.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            if path is not None:
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    @classmethod
    def open(cls, settings: PersistenceSettings) -> Database:
        """`data/pensieve.db` when PENSIEVE_PERSIST=sqlite, else a database in memory."""
        return cls(settings.data_dir / DATABASE_FILE if settings.persist == "sqlite" else None)

    @property
    def persistent(self) -> bool:
        """True when what is written survives a restart."""
        return self.path is not None

    def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Apply `component`'s migrations this database lacks (step i is version i + 1); the version reached."""
        with self._lock:
            row = self._connection.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            current = int(row["version"]) if row else 0
            if current > len(steps):
                raise DatabaseError(
                    f"{self.path}: the {component} tables are at version {current}, newer than this Pensieve "
                    f"knows ({len(steps)}); use the newer version, or move the file away."
                )
            for version, script in enumerate(steps[current:], start=current + 1):
                with self.transaction() as cursor:
                    for statement in _statements(script):
                        cursor.execute(statement)
                    cursor.execute(
                        "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                        "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        (component, version),
                    )
            return len(steps)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction: committed (and on disk) when the block ends, rolled back if it raises."""
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def query(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read."""
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close the connection (a WAL database checkpoints into its main file)."""
        with self._lock:
            self._connection.close()


def _statements(script: str) -> list[str]:
    """A migration's statements (`;`-separated; migrations hold no `;` inside literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
