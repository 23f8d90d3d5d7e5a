"""The cloud spend ledger: what the cloud cost and what running locally saved, per day, in SQLite.

It holds numbers only: per calendar day, route, provider and model, the request count, the prompt and completion
tokens, the cloud cost and the money saved locally (local tokens priced at the default cloud prices). No prompt
text is ever stored. One row per (day, route, provider, model), updated in place with an UPSERT, keeps the table
small however many requests are served, and the file (under PENSIEVE_DATA_DIR) survives restarts.

"Today" and "this month" are the calendar date of the injected clock; the default clock is the server's local
time (`datetime.now()`), so the daily cap resets at local midnight and the monthly cap on the 1st.

The burst controller reads today's and this month's spend on every routing decision, so both are kept in memory
and only re-read from the database when the date changes; writes are one short UPSERT each. Calls come from the
asyncio event loop and from worker threads, so one lock guards the connection and the cached totals.

A full disk, a read-only or missing data folder must never turn an answer into a 500: when a write fails for
such a reason (an OperationalError: "database or disk is full", "attempt to write a readonly database", I/O
errors), or the file cannot be opened at start-up (`SpendLedger.open`), the ledger moves to an in-memory
database seeded with the rows it had (or, if they cannot be read any more, with the cached totals), logs one
warning and says so in `degraded`, so budgets still hold and /ready and the UI can report it. A damaged file or
one from a newer version still raises: silently starting afresh there would forget the month's spend.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_CLOUD, _LOCAL = 1, 0
# Days are stored as the integer YYYYMMDD: readable in the sqlite3 shell, and a month is a range of the key.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_daily (
    day INTEGER NOT NULL,
    route INTEGER NOT NULL CHECK (route IN (0, 1)),
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    saved_usd REAL NOT NULL,
    PRIMARY KEY (day, route, provider, model)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO spend_daily (day, route, provider, model, requests, prompt_tokens, completion_tokens, cost_usd, saved_usd)
VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (day, route, provider, model) DO UPDATE SET
    requests = requests + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost_usd = cost_usd + excluded.cost_usd,
    saved_usd = saved_usd + excluded.saved_usd
"""
_ALL_ROWS = "SELECT * FROM spend_daily"
_INSERT_ROW = "INSERT INTO spend_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# The provider name of the rows that carry today's and the month's totals over when the old rows are unreadable.
CARRIED_OVER = "(carried over)"
_SPENT = """
SELECT COALESCE(SUM(CASE WHEN day = :today THEN cost_usd END), 0.0), COALESCE(SUM(cost_usd), 0.0)
FROM spend_daily WHERE day BETWEEN :month_start AND :month_end
"""
_TOTALS = """
SELECT
    COALESCE(SUM(CASE WHEN day = :today THEN cost_usd END), 0.0),
    COALESCE(SUM(CASE WHEN day BETWEEN :month_start AND :month_end THEN cost_usd END), 0.0),
    COALESCE(SUM(cost_usd), 0.0),
    COALESCE(SUM(CASE WHEN day = :today THEN saved_usd END), 0.0),
    COALESCE(SUM(CASE WHEN day BETWEEN :month_start AND :month_end THEN saved_usd END), 0.0),
    COALESCE(SUM(saved_usd), 0.0),
    COALESCE(SUM(CASE WHEN route = 1 THEN requests END), 0),
    COALESCE(SUM(CASE WHEN route = 0 THEN requests END), 0),
    COALESCE(SUM(CASE WHEN route = 1 THEN prompt_tokens END), 0),
    COALESCE(SUM(CASE WHEN route = 1 THEN completion_tokens END), 0),
    COALESCE(SUM(CASE WHEN route = 0 THEN prompt_tokens END), 0),
    COALESCE(SUM(CASE WHEN route = 0 THEN completion_tokens END), 0)
FROM spend_daily
"""


class LedgerError(Exception):
    """The spend ledger's file cannot be opened, read or written (corrupt, unreadable, disk full...)."""


@dataclass(frozen=True)
class SpendTotals:
    """Cloud spend and local savings in USD for today, this month and all time; counts and tokens are all-time."""

    today_usd: float
    month_usd: float
    all_time_usd: float
    saved_today_usd: float
    saved_month_usd: float
    saved_all_time_usd: float
    cloud_requests: int
    local_requests: int
    cloud_prompt_tokens: int
    cloud_completion_tokens: int
    local_prompt_tokens: int
    local_completion_tokens: int


class SpendLedger:
    """Records each request's tokens and cost (cloud) or savings (local), and sums them per day and month."""

    def __init__(self, path: Path | None, *, clock: Callable[[], datetime] = datetime.now) -> None:
        """Open or create the ledger at `path` (parent folders are created); None keeps it in memory only.

        Raises LedgerError naming the path when the file is not a usable SQLite database.
        """
        self._where = str(path) if path is not None else "the in-memory ledger"
        self._clock = clock
        self.degraded: str | None = None
        self._lock = threading.Lock()
        self._cache_day = date.min
        self._today_usd = 0.0
        self._month_usd = 0.0
        try:
            self._connection = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            # A plain DatabaseError (not an OperationalError such as "unable to open") means bad bytes.
            damaged = type(exc) is sqlite3.DatabaseError
            hint = " (damaged or not a ledger: move it aside to start a new one)" if damaged else ""
            raise LedgerError(f"cannot open the spend ledger {self._where}: {exc}{hint}") from exc
        try:
            version = self._query("PRAGMA user_version", {})[0]
            if version > _SCHEMA_VERSION:
                raise LedgerError(f"the spend ledger {self._where} was written by a newer Pensieve (v{version})")
            with self._lock:
                self._reload(clock().date())
        except LedgerError:
            self._connection.close()
            raise

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], datetime] = datetime.now) -> SpendLedger:
        """The ledger at `path`, or an in-memory one (with `degraded` set and a warning logged) if it cannot be opened.

        Only an unusable place degrades (a missing or read-only folder, a full disk); a damaged file or one from
        a newer Pensieve still raises LedgerError, since starting afresh would forget this month's spend.
        """
        try:
            return cls(path, clock=clock)
        except LedgerError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.DatabaseError) and type(cause) is not sqlite3.OperationalError:
                raise
            if cause is None:  # a newer schema version: not a place problem
                raise
            ledger = cls(None, clock=clock)
            ledger._where = str(path)
            ledger._degrade(f"cannot open {path}: {cause}")
            return ledger

    def record_cloud(
        self, *, provider: str, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None:
        """Add one cloud request's tokens and cost to today's row for this provider and model."""
        _check_usage(prompt_tokens, completion_tokens, cost_usd, "cost_usd")
        self._record(_CLOUD, provider, model, prompt_tokens, completion_tokens, cost_usd, 0.0)

    def record_local(self, *, model: str, prompt_tokens: int, completion_tokens: int, saved_usd: float) -> None:
        """Add one local request's tokens and the money it saved (its tokens at cloud prices) to today's row."""
        _check_usage(prompt_tokens, completion_tokens, saved_usd, "saved_usd")
        self._record(_LOCAL, "", model, prompt_tokens, completion_tokens, 0.0, saved_usd)

    def totals(self) -> SpendTotals:
        """Spend and savings for today, this month and all time, with all-time request and token counts."""
        today = self._clock().date()
        with self._lock:
            row = self._query(_TOTALS, _period(today))
        return SpendTotals(
            today_usd=float(row[0]),
            month_usd=float(row[1]),
            all_time_usd=float(row[2]),
            saved_today_usd=float(row[3]),
            saved_month_usd=float(row[4]),
            saved_all_time_usd=float(row[5]),
            cloud_requests=int(row[6]),
            local_requests=int(row[7]),
            cloud_prompt_tokens=int(row[8]),
            cloud_completion_tokens=int(row[9]),
            local_prompt_tokens=int(row[10]),
            local_completion_tokens=int(row[11]),
        )

    def spent_today(self) -> float:
        """Cloud spend in USD since local midnight (from memory; re-read only when the date changes)."""
        today = self._clock().date()
        with self._lock:
            if today != self._cache_day:
                self._reload(today)
            return self._today_usd

    def spent_this_month(self) -> float:
        """Cloud spend in USD since the 1st of this month (from memory; re-read only when the date changes)."""
        today = self._clock().date()
        with self._lock:
            if today != self._cache_day:
                self._reload(today)
            return self._month_usd

    def close(self) -> None:
        """Close the database; later records and reads of the file raise LedgerError. Closing twice is harmless."""
        with self._lock:
            self._connection.close()

    def _record(
        self,
        route: int,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        saved: float,
    ) -> None:
        today = self._clock().date()
        with self._lock:
            row = (_day_key(today), route, provider, model, prompt_tokens, completion_tokens, cost, saved)
            try:
                self._connection.execute(_UPSERT, row)
            except sqlite3.OperationalError as exc:
                # Disk full, read-only or vanished folder: keep counting in memory rather than fail the answer.
                self._degrade(f"cannot write to {self._where}: {exc}")
                self._connection.execute(_UPSERT, row)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot write to the spend ledger {self._where}: {exc}") from exc
            if today != self._cache_day:
                self._reload(today)
            else:
                self._today_usd += cost
                self._month_usd += cost

    def _degrade(self, why: str) -> None:
        """Move to an in-memory database holding what the file held (the caller holds the lock, or owns self)."""
        memory = _connect(None)
        try:
            rows = self._connection.execute(_ALL_ROWS).fetchall()
        except sqlite3.Error:
            # The old rows cannot be read either: carry today's and the month's cached spend over, so caps hold.
            today = self._cache_day if self._cache_day != date.min else self._clock().date()
            earlier = _period(today)["month_start"]  # "day 0": inside this month's range, never today
            before_today = self._month_usd - self._today_usd
            rows = [
                (_day_key(today), _CLOUD, CARRIED_OVER, CARRIED_OVER, 0, 0, 0, self._today_usd, 0.0),
                (earlier, _CLOUD, CARRIED_OVER, CARRIED_OVER, 0, 0, 0, before_today, 0.0),
            ]
        memory.executemany(_INSERT_ROW, rows)
        with contextlib.suppress(sqlite3.Error):
            self._connection.close()
        self._connection = memory
        self.degraded = f"The spend ledger is kept in memory only ({why}); spend since then is lost at restart."
        logger.warning("%s", self.degraded)

    def _reload(self, today: date) -> None:
        """Re-read today's and this month's spend (the caller holds the lock)."""
        period = _period(today)
        self._today_usd, self._month_usd = (float(value) for value in self._query(_SPENT, period))
        self._cache_day = today

    def _query(self, sql: str, parameters: dict[str, int]) -> tuple[float | int, ...]:
        try:
            row: tuple[float | int, ...] = self._connection.execute(sql, parameters).fetchone()
        except sqlite3.OperationalError as exc:
            if self.degraded is not None:
                raise LedgerError(f"cannot read the spend ledger {self._where}: {exc}") from exc
            # An I/O error on the file: read (and from now on write) the in-memory copy instead.
            self._degrade(f"cannot read {self._where}: {exc}")
            row = self._connection.execute(sql, parameters).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the spend ledger {self._where}: {exc}") from exc
        return row


def _connect(path: Path | None) -> sqlite3.Connection:
    """Open the database and create the table if needed."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: every UPSERT is its own short transaction; the ledger's lock serialises the threads.
    connection = sqlite3.connect(
        ":memory:" if path is None else str(path), isolation_level=None, check_same_thread=False
    )
    try:
        # A second server on the same data folder waits briefly instead of failing at once.
        connection.execute("PRAGMA busy_timeout = 250")
        if path is not None:
            # WAL + NORMAL: a commit appends without an fsync; a power cut can lose the last few records
            # but not corrupt the file, which suits a spend tally.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(_SCHEMA)
        if connection.execute("PRAGMA user_version").fetchone()[0] == 0:
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def _day_key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _period(today: date) -> dict[str, int]:
    """Query parameters for today and the month around it (day 0 to day 99 of the month covers every day)."""
    month_start = today.year * 10_000 + today.month * 100
    return {"today": _day_key(today), "month_start": month_start, "month_end": month_start + 99}


def _check_usage(prompt_tokens: int, completion_tokens: int, amount: float, amount_name: str) -> None:
    """Refuse values that would corrupt the sums for good (negative counts, NaN or infinite amounts)."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got {prompt_tokens} and {completion_tokens}")
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{amount_name} must be a finite number >= 0, got {amount!r}")
