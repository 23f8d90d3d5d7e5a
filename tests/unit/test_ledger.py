"""The spend ledger: sums per day and month, persistence, in-memory mode, savings, corruption and threads."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pensieve.burst.ledger import LedgerError, SpendLedger


class Clock:
    """A settable clock, so tests can cross midnight and month ends."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 14, 12, 0))


@pytest.fixture
def ledger(clock: Clock) -> Iterator[SpendLedger]:
    ledger = SpendLedger(None, clock=clock)
    yield ledger
    ledger.close()


def cloud(ledger: SpendLedger, cost: float, *, prompt: int = 100, completion: int = 50) -> None:
    ledger.record_cloud(
        provider="openai", model="openai/gpt-4o-mini", prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost
    )


def local(ledger: SpendLedger, saved: float, *, prompt: int = 10, completion: int = 5) -> None:
    ledger.record_local(model="gemma-3-270m", prompt_tokens=prompt, completion_tokens=completion, saved_usd=saved)


def test_a_new_ledger_is_empty(ledger: SpendLedger) -> None:
    totals = ledger.totals()
    assert ledger.spent_today() == 0.0
    assert ledger.spent_this_month() == 0.0
    assert totals.all_time_usd == 0.0
    assert totals.cloud_requests == totals.local_requests == 0


def test_cloud_and_local_records_add_up(ledger: SpendLedger) -> None:
    cloud(ledger, 0.25, prompt=100, completion=50)
    cloud(ledger, 0.5, prompt=200, completion=70)
    ledger.record_cloud(provider="other", model="other/m", prompt_tokens=1, completion_tokens=2, cost_usd=0.25)
    local(ledger, 0.01, prompt=10, completion=5)
    local(ledger, 0.02, prompt=30, completion=15)
    totals = ledger.totals()
    assert ledger.spent_today() == pytest.approx(1.0)
    assert ledger.spent_this_month() == pytest.approx(1.0)
    assert (totals.today_usd, totals.month_usd, totals.all_time_usd) == pytest.approx((1.0, 1.0, 1.0))
    assert (totals.saved_today_usd, totals.saved_month_usd, totals.saved_all_time_usd) == pytest.approx(
        (0.03, 0.03, 0.03)
    )
    assert (totals.cloud_requests, totals.cloud_prompt_tokens, totals.cloud_completion_tokens) == (3, 301, 122)
    assert (totals.local_requests, totals.local_prompt_tokens, totals.local_completion_tokens) == (2, 40, 20)


def test_local_requests_never_count_as_spend(ledger: SpendLedger) -> None:
    local(ledger, 3.0)
    assert ledger.spent_today() == 0.0
    assert ledger.totals().all_time_usd == 0.0


def test_day_rollover_resets_today_but_not_the_month(ledger: SpendLedger, clock: Clock) -> None:
    cloud(ledger, 1.0)
    local(ledger, 0.5)
    assert ledger.spent_today() == 1.0
    clock.now = datetime(2025, 3, 15, 0, 0, 1)
    assert ledger.spent_today() == 0.0
    assert ledger.spent_this_month() == 1.0
    cloud(ledger, 2.0)
    local(ledger, 0.25)
    totals = ledger.totals()
    assert (totals.today_usd, totals.month_usd, totals.all_time_usd) == (2.0, 3.0, 3.0)
    assert (totals.saved_today_usd, totals.saved_month_usd, totals.saved_all_time_usd) == (0.25, 0.75, 0.75)


def test_month_rollover_resets_the_month_but_not_all_time(ledger: SpendLedger, clock: Clock) -> None:
    clock.now = datetime(2025, 1, 31, 23, 59, 59)
    cloud(ledger, 4.0)
    clock.now = datetime(2025, 2, 1, 0, 0, 0)
    assert ledger.spent_today() == 0.0
    assert ledger.spent_this_month() == 0.0
    cloud(ledger, 1.5)
    assert ledger.spent_this_month() == 1.5
    clock.now = datetime(2026, 2, 1, 9, 0)
    totals = ledger.totals()
    assert (totals.today_usd, totals.month_usd, totals.all_time_usd) == (0.0, 0.0, 5.5)
    assert totals.cloud_requests == 2


def test_the_ledger_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "nested" / "data" / "spend.sqlite3"
    first = SpendLedger(path, clock=clock)
    cloud(first, 0.75)
    local(first, 0.1)
    first.close()
    second = SpendLedger(path, clock=clock)
    try:
        assert second.spent_today() == 0.75
        assert second.spent_this_month() == 0.75
        cloud(second, 0.25)
        totals = second.totals()
        assert totals.all_time_usd == 1.0
        assert totals.saved_all_time_usd == pytest.approx(0.1)
        assert (totals.cloud_requests, totals.local_requests) == (2, 1)
    finally:
        second.close()


def test_one_row_per_day_route_and_model_holding_numbers_only(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "spend.sqlite3"
    ledger = SpendLedger(path, clock=clock)
    for _ in range(50):
        cloud(ledger, 0.01)
        local(ledger, 0.01)
    ledger.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM spend_daily").fetchone() == (2,)
        columns = connection.execute("SELECT name, type FROM pragma_table_info('spend_daily')").fetchall()
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()
    text_columns = {name for name, kind in columns if kind == "TEXT"}
    assert text_columns == {"provider", "model"}


def test_the_in_memory_ledger_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = SpendLedger(None, clock=clock)
    cloud(ledger, 0.5)
    assert ledger.totals().all_time_usd == 0.5
    ledger.close()
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_file_raises_a_ledger_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(LedgerError, match=re.escape(str(path))):
        SpendLedger(path)


def test_a_folder_in_place_of_the_file_raises_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    path.mkdir()
    with pytest.raises(LedgerError, match=re.escape(str(path))):
        SpendLedger(path)


def test_a_ledger_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(LedgerError, match="newer Pensieve"):
        SpendLedger(path)


def test_writing_after_close_raises_a_ledger_error(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "spend.sqlite3"
    ledger = SpendLedger(path, clock=clock)
    ledger.close()
    with pytest.raises(LedgerError, match=re.escape(str(path))):
        cloud(ledger, 0.1)
    ledger.close()


@pytest.mark.parametrize(
    ("prompt", "completion", "amount"),
    [(-1, 0, 0.1), (0, -1, 0.1), (1, 1, -0.1), (1, 1, float("nan")), (1, 1, float("inf"))],
)
def test_invalid_usage_is_refused(ledger: SpendLedger, prompt: int, completion: int, amount: float) -> None:
    with pytest.raises(ValueError):
        cloud(ledger, amount, prompt=prompt, completion=completion)
    with pytest.raises(ValueError):
        local(ledger, amount, prompt=prompt, completion=completion)
    assert ledger.totals().all_time_usd == 0.0


def test_concurrent_records_from_threads_sum_correctly(tmp_path: Path, clock: Clock) -> None:
    ledger = SpendLedger(tmp_path / "spend.sqlite3", clock=clock)
    threads_count, per_thread = 8, 100
    start = threading.Barrier(threads_count)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            cloud(ledger, 0.001, prompt=3, completion=2)
            local(ledger, 0.002, prompt=1, completion=1)
            ledger.spent_today()

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = threads_count * per_thread
    totals = ledger.totals()
    ledger.close()
    assert totals.cloud_requests == totals.local_requests == requests
    assert (totals.cloud_prompt_tokens, totals.cloud_completion_tokens) == (3 * requests, 2 * requests)
    assert totals.all_time_usd == pytest.approx(0.001 * requests)
    assert totals.saved_all_time_usd == pytest.approx(0.002 * requests)
    assert ledger.spent_today() == pytest.approx(0.001 * requests)


# --- a full disk or an unusable data folder: the ledger degrades to memory, never fails a request ------------


def _fill_disk(ledger: SpendLedger) -> None:
    """Make every write that needs a new page fail with SQLITE_FULL, as on a full disk (root ignores modes)."""
    connection = ledger._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_moves_the_ledger_to_memory_keeping_every_total(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = SpendLedger(tmp_path / "spend.sqlite3", clock=clock)
    cloud(ledger, 0.25)
    local(ledger, 0.5)
    _fill_disk(ledger)
    written = 0
    with caplog.at_level("WARNING", logger="pensieve.burst.ledger"):
        # New rows (one per model) need new pages sooner or later: the first that does hits the full disk.
        while ledger.degraded is None and written < 500:
            ledger.record_cloud(
                provider="p", model=f"p/model-{written}", prompt_tokens=1, completion_tokens=1, cost_usd=0.01
            )
            written += 1
        assert ledger.degraded is not None and "database or disk is full" in ledger.degraded
        for _ in range(3):
            cloud(ledger, 0.1)
    totals = ledger.totals()
    ledger.close()
    # Nothing was lost in the move: the rows the file held and every record since are in the sums.
    assert totals.all_time_usd == pytest.approx(0.25 + 0.01 * written + 0.3)
    assert totals.today_usd == totals.month_usd == pytest.approx(0.25 + 0.01 * written + 0.3)
    assert totals.saved_all_time_usd == 0.5
    assert totals.cloud_requests == 1 + written + 3
    assert ledger.spent_today() == pytest.approx(totals.today_usd)
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "in memory" in warnings[0].getMessage()


def test_unreadable_rows_are_carried_over_as_todays_and_the_months_totals(tmp_path: Path, clock: Clock) -> None:
    ledger = SpendLedger(tmp_path / "spend.sqlite3", clock=clock)
    cloud(ledger, 0.25)
    clock.now = datetime(2025, 3, 15, 9, 0)
    cloud(ledger, 0.5)
    ledger._connection.close()  # neither readable nor writable any more: only the cached totals remain
    ledger._degrade("test")
    cloud(ledger, 0.125)
    assert ledger.spent_today() == pytest.approx(0.625)
    assert ledger.spent_this_month() == pytest.approx(0.875)
    ledger.close()


def test_open_degrades_to_memory_when_the_data_folder_is_unusable(tmp_path: Path, clock: Clock) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the data folder should be")
    ledger = SpendLedger.open(blocker / "data" / "spend.sqlite3", clock=clock)
    assert ledger.degraded is not None and str(blocker) in ledger.degraded
    cloud(ledger, 0.5)
    assert ledger.spent_today() == 0.5
    ledger.close()


def test_open_still_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(LedgerError, match="damaged"):
        SpendLedger.open(path)
