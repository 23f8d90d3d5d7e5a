"""PENSIEVE_RETENTION_DAYS with the real stores on an in-memory database: old sessions go, recent ones stay."""

from __future__ import annotations

import time
from pathlib import Path

from pensieve.burst.options import privacy_scanner
from pensieve.config import Settings
from pensieve.files.store import FileStore
from pensieve.persistence.database import Database
from pensieve.persistence.retention import DAY_SECONDS, RetentionSweeper
from pensieve.sessions import SessionStore
from pensieve.settings_sections import FilesSettings


def test_the_sweep_deletes_what_is_older_than_the_period_and_nothing_when_off(tmp_path: Path) -> None:
    database = Database(None)
    sessions = SessionStore(database)
    files = FileStore(database, FilesSettings(), privacy_scanner(Settings()), tmp_path)
    old = sessions.create("key:a", title="old")
    sweeper = RetentionSweeper([sessions.purge_older_than, files.purge_older_than], days=0)
    later = time.time() + 10 * DAY_SECONDS
    assert sweeper.sweep(now=later) == 0  # 0 days: keep everything
    sweeper.days = 30
    assert sweeper.sweep(now=later) == 0 and sessions.get("key:a", old.id) is not None
    sweeper.days = 5
    assert sweeper.sweep(now=later) == 1 and sessions.get("key:a", old.id) is None
    files.close()
