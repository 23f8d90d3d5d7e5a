"""GET /api/ps: the models in memory now, like `ollama ps`: worker, window, KV cache, memory, load, keep-alive;
and the models that failed: a load failure, or the last crash of a worker (how it died, and whether a new
worker has loaded since)."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Depends

from pensieve import __version__
from pensieve.api.access import inference_caller
from pensieve.api.deps import PoolDep, ProcessDep, SettingsDep
from pensieve.engine.local_engine import LocalEngine
from pensieve.engine.pool import ModelPool
from pensieve.observability import process_rss_bytes, server_rss_bytes

router = APIRouter(prefix="/api", tags=["Admin"], dependencies=[Depends(inference_caller)])


def describe_loaded(engine: LocalEngine, pool: ModelPool) -> dict[str, Any]:
    """One row of /api/ps."""
    facts, stats = engine.facts, engine.stats()
    estimate = pool.estimate(engine.model_id)
    keep_alive = pool.keep_alive_for(engine.model_id)
    expires_in = pool.expires_in(engine)
    return {
        "id": engine.model_id,
        "pid": engine.pid,
        "loaded_at": engine.loaded_at,
        "context_length": facts.window,
        "parallel": facts.n_parallel,
        "kv_cells": facts.kv_size,
        "kv_cells_in_use": engine.kv_cells_in_use,
        "estimated_memory_bytes": estimate.total_bytes if estimate else None,
        "estimated_memory": {
            "weights_bytes": estimate.weights_bytes,
            "kv_cache_bytes": estimate.kv_bytes,
            "compute_bytes": estimate.compute_bytes,
        }
        if estimate
        else None,
        "rss_bytes": process_rss_bytes(engine.pid),
        "busy": pool.in_use(engine),
        "busy_sequences": stats.busy_sequences,
        "queue_depth": stats.queue_depth,
        "requests_served": stats.requests_served,
        "recent_tokens_per_second": stats.recent_tokens_per_second,
        "speculative": speculation_row(engine.worker.drafted, engine.worker.accepted),
        "keep_alive_seconds": keep_alive,
        "expires_in_seconds": expires_in,
        "expires_at": time.time() + expires_in if expires_in is not None else None,
    }


def speculation_row(drafted: int, accepted: int) -> dict[str, Any]:
    """Speculative decoding since the worker started: draft tokens verified, accepted, and the rate."""
    return {
        "drafted_tokens": drafted,
        "accepted_tokens": accepted,
        "acceptance_rate": accepted / drafted if drafted else None,
    }


@router.get("/ps")
async def list_loaded_models(pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    """Loaded models with their worker pid, context, KV cells, estimated and real memory, load and keep-alive.

    Times are Unix timestamps; `keep_alive_seconds` -1 means the model is never unloaded for idleness, and
    `expires_at` is null while it is busy or kept forever. Memory estimates are explained in docs/engine.md.
    `speculative` counts the draft tokens of speculative decoding (prompt lookup) the worker verified and how
    many it accepted. `failures` holds, per model, its remembered load failure or its last worker crash: `stage`
    (loading or serving), `message`, `exit_code`, `signal` ("SIGILL", null for an exit), `at`, and
    `recovered`/`recovered_at` once a new worker has loaded the model.
    """
    models = [describe_loaded(engine, pool) for engine in pool.loaded()]
    return {
        "models": models,
        "failures": [failure.to_json() for failure in pool.failures()],
        "max_loaded_models": settings.engine.max_loaded_models,
        "memory_limit_bytes": settings.engine.memory_limit,
        "estimated_memory_in_use_bytes": sum(m["estimated_memory_bytes"] or 0 for m in models),
        "default_keep_alive_seconds": settings.engine.keep_alive,
    }


@router.get("/system")
async def system(pool: PoolDep, process: ProcessDep, settings: SettingsDep) -> dict[str, Any]:
    """Version, uptime, memory and CPU use of the server process, loaded models, and whether sessions and
    files survive a restart (`persist`: none or sqlite)."""
    return {
        "version": __version__,
        "uptime_seconds": process.uptime_seconds,
        "rss_bytes": server_rss_bytes(),
        # Each loaded model lives in its own worker process: its memory is not in rss_bytes.
        "workers_rss_bytes": sum(process_rss_bytes(engine.pid) or 0 for engine in pool.loaded()),
        "cpu_percent": process.cpu_percent(),
        "cpu_cores": os.cpu_count(),
        "loaded_models": [engine.model_id for engine in pool.loaded()],
        "persist": settings.persistence.persist,
    }
