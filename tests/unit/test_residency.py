"""Which models stay loaded: busy detection, keep-alive expiry, LRU eviction plans, and the pool applying them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pensieve.config import Settings
from pensieve.engine.memory import MemoryEstimate
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelRegistry
from pensieve.engine.residency import HANDOUT_GRACE_SECONDS, Resident, expires_at, is_busy, is_expired, plan_admission
from pensieve.engine_api import EngineStats
from pensieve.errors import InvalidRequestError, ModelNotFoundError, ServiceUnavailableError

MB = 1_000_000


def resident(
    model_id: str, *, busy: bool = False, idle_since: float = 0.0, keep_alive: float = 300, mb: int = 500
) -> Resident:
    return Resident(model_id, busy=busy, idle_since=idle_since, keep_alive=keep_alive, memory_bytes=mb * MB)


def needs(mb: int) -> MemoryEstimate:
    return MemoryEstimate(weights_bytes=mb * MB, kv_cells=4096, kv_bytes=0, compute_bytes=0)


# --- busy and expiry ---------------------------------------------------------------------------------


def test_requests_in_flight_or_a_holding_response_make_a_model_busy() -> None:
    quiet = {"handed_out_at": None, "last_started_at": 0.0, "released_at": 0.0, "now": 100.0}
    assert is_busy(in_flight=1, holds=0, **quiet)
    assert is_busy(in_flight=0, holds=1, **quiet)
    assert not is_busy(in_flight=0, holds=0, **quiet)


def test_a_handed_out_engine_is_busy_until_its_request_starts_or_the_grace_ends() -> None:
    def busy(now: float, started: float = 0.0, released: float = 0.0) -> bool:
        return is_busy(in_flight=0, holds=0, handed_out_at=10.0, last_started_at=started, released_at=released, now=now)

    assert busy(10.5)
    assert not busy(10.0 + HANDOUT_GRACE_SECONDS)  # the caller never used it (e.g. the request went to the cloud)
    assert not busy(10.5, started=10.2)  # its request started (and, with no request in flight, ended)
    assert not busy(10.5, released=10.3)


def test_keep_alive_expiry() -> None:
    idle = resident("a", idle_since=100.0, keep_alive=300)
    assert expires_at(idle) == 400.0
    assert not is_expired(idle, 399.9)
    assert is_expired(idle, 400.0)
    assert is_expired(resident("a", idle_since=100.0, keep_alive=0), 100.0)  # 0: unload as soon as idle
    assert expires_at(resident("a", keep_alive=-1)) is None  # never
    assert expires_at(resident("a", busy=True, keep_alive=0)) is None  # busy models never expire


# --- admission: LRU eviction and refusals ---------------------------------------------------------------


def plan(residents: list[Resident], *, mb: int = 500, limit_mb: int = 0, max_loaded: int = 0) -> tuple[str, ...]:
    return plan_admission(
        residents,
        model_id="new",
        needed=needs(mb),
        memory_limit=limit_mb * MB,
        max_loaded=max_loaded,
        retry_after_seconds=3.4,
    )


def test_room_to_spare_evicts_nothing() -> None:
    assert plan([resident("a")], max_loaded=2, limit_mb=2000) == ()
    assert plan([resident("a"), resident("b")]) == ()  # no limits at all


def test_the_least_recently_used_idle_model_goes_first() -> None:
    models = [resident("recent", idle_since=50), resident("old", idle_since=10), resident("busy", busy=True)]
    assert plan(models, max_loaded=3) == ("old",)
    assert plan(models, max_loaded=2) == ("old", "recent")


def test_memory_evicts_until_the_new_model_fits() -> None:
    models = [resident("a", idle_since=1, mb=300), resident("b", idle_since=2, mb=300), resident("c", idle_since=3)]
    assert plan(models, mb=400, limit_mb=1200) == ("a",)  # 1100 in use: freeing 300 leaves room for 400
    assert plan(models, mb=900, limit_mb=1200) == ("a", "b", "c")


def test_all_busy_at_the_count_limit_is_a_503_with_retry_after() -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        plan([resident("a", busy=True), resident("b", busy=True)], max_loaded=2)
    error = caught.value
    assert error.status_code == 503 and error.code == "models_busy"
    assert error.message.startswith("2 models are loaded and busy")
    assert "raise PENSIEVE_MAX_LOADED_MODELS or retry" in error.message
    assert error.headers["retry-after"] == "3"


def test_busy_models_holding_the_memory_are_a_503_naming_the_numbers() -> None:
    models = [resident("idle", mb=100, idle_since=1), resident("busy", busy=True, mb=700)]
    with pytest.raises(ServiceUnavailableError) as caught:
        plan(models, mb=400, limit_mb=1000)
    error = caught.value
    assert error.code == "insufficient_memory"
    assert "needs about 400 MB" in error.message and "1 GB" in error.message and "700 MB" in error.message
    assert "busy" in error.message


def test_a_model_larger_than_the_limit_alone_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        plan([resident("a")], mb=1500, limit_mb=1000)
    error = caught.value
    assert error.status_code == 400 and error.code == "model_too_large" and error.param == "model"
    assert "needs about 1.5 GB" in error.message and "(1 GB)" in error.message and "500 MB is in use" in error.message


# --- the pool applying the rules (fake engines, injected clock) ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_engine(model_id: str, clock: FakeClock) -> Any:
    closed: list[str] = []

    async def close() -> None:
        closed.append(model_id)

    return SimpleNamespace(
        model_id=model_id,
        alive=True,
        last_used=clock.now,
        info=SimpleNamespace(size_bytes=100 * MB),
        worker=SimpleNamespace(in_flight=0, kv_cells=0, pid=None, crash=None),
        stats=lambda: EngineStats(model=model_id),
        close=close,
        closed=closed,
    )


def pool_with(tmp_path: Path, clock: FakeClock, *ids: str, keep_alive: float = 300) -> ModelPool:
    settings = Settings.from_values(keep_alive=keep_alive, models_dir=tmp_path)
    pool = ModelPool(settings.engine, ModelRegistry(tmp_path), clock=clock)
    for model_id in ids:
        pool._engines[model_id] = fake_engine(model_id, clock)
    return pool


def test_the_pool_unloads_models_idle_longer_than_their_keep_alive(tmp_path: Path) -> None:
    clock = FakeClock()
    pool = pool_with(tmp_path, clock, "a", "b")
    pool.set_keep_alive("b", -1)
    clock.now += 299
    assert asyncio.run(pool.unload_expired()) == []
    assert pool.expires_in(pool._engines["a"]) == pytest.approx(1.0)
    assert pool.expires_in(pool._engines["b"]) is None
    clock.now += 2
    assert asyncio.run(pool.unload_expired()) == ["a"]
    assert [engine.model_id for engine in pool.loaded()] == ["b"]


def test_keep_alive_counts_from_the_end_of_the_response(tmp_path: Path) -> None:
    clock = FakeClock()
    pool = pool_with(tmp_path, clock, "a", keep_alive=10)
    engine = pool._engines["a"]
    with pool.hold("a", keep_alive=0):  # a request asking to unload when done
        clock.now += 60
        engine.worker.in_flight = 1
        assert asyncio.run(pool.unload_expired()) == []
        engine.worker.in_flight = 0
        assert pool.in_use(engine)
    assert pool.keep_alive_for("a") == 0.0
    assert asyncio.run(pool.unload_expired()) == ["a"]
    assert engine.closed == ["a"]


def test_an_engine_just_handed_out_survives_a_zero_keep_alive_until_its_request_runs(tmp_path: Path) -> None:
    clock = FakeClock()
    pool = pool_with(tmp_path, clock, "a", keep_alive=0)
    clock.now += 5
    asyncio.run(pool.get("a"))  # the burst controller takes it, then tokenizes the prompt
    clock.now += 1
    assert asyncio.run(pool.unload_expired()) == []
    clock.now += HANDOUT_GRACE_SECONDS  # never used (the request went to the cloud)
    assert asyncio.run(pool.unload_expired()) == ["a"]


def test_unknown_model_ids_leave_no_state_behind(tmp_path: Path) -> None:
    """A client can name any model id; a thousand unknown ones must not grow the pool (one lock each, before)."""
    pool = pool_with(tmp_path, FakeClock())

    async def ask_for_missing_models() -> None:
        for index in range(1000):
            with pytest.raises(ModelNotFoundError):
                await pool.get(f"no-such-model-{index}")

    asyncio.run(ask_for_missing_models())
    assert pool._locks == {} and pool._lock_users == {}
    assert pool.failures() == [] and pool._handed_out == {}
