"""Liveness and readiness probes: GET /health (the process answers) and GET /ready (a model can serve).

/ready is 503 from the moment the server starts shutting down, and while the default model cannot load
(its load failure, a worker crash among them, is the message) unless another loaded model or a cloud
model can serve. Its body names the default model's last crash until a new worker has loaded it, and
lists in `warnings` what works in a degraded way without stopping answers (the spend ledger kept in
memory after a full disk or an unusable data folder).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pensieve import __version__
from pensieve.api.deps import CloudDep, DrainDep, LedgerDep, PoolDep, SettingsDep
from pensieve.engine.failures import ModelFailure

router = APIRouter(tags=["Health"])


def _is_crash(failure: ModelFailure) -> bool:
    return failure.stage == "serving" or failure.exit_code is not None


@router.get("/health")
async def health() -> dict[str, Any]:
    """Always 200 while the server process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(
    pool: PoolDep, settings: SettingsDep, cloud: CloudDep, ledger: LedgerDep, drain: DrainDep
) -> JSONResponse:
    """200 when a loaded (or idle-unloaded) model, or a cloud model with a closed circuit, can serve; else 503.

    `local_error` is what keeps the default model from serving now (a load failure, or a crash that no new
    worker has recovered from yet); `last_crash` is that crash's record (exit code, signal, time).
    """
    loaded = [engine.model_id for engine in pool.loaded()]
    cloud_ready = [m for m in cloud.model_ids() if cloud.breaker(m).would_allow()]
    current = pool.current_failure(settings.engine.default_model)
    body: dict[str, Any] = {
        "default_model": settings.engine.default_model,
        "loaded_models": loaded,
        "cloud_models_ready": cloud_ready,
        "local_error": current.message if current else None,
        "last_crash": current.to_json() if current and _is_crash(current) else None,
        # Degraded but still serving: reported, never a reason for a 503.
        "warnings": [{"component": "spend_ledger", "message": ledger.degraded}] if ledger.degraded else [],
    }
    if drain.draining:  # a load balancer must stop sending requests at once
        error = drain.refusal()
        body["error"] = error.to_body()["error"]
        return JSONResponse({"status": "shutting_down", **body}, status_code=503)
    # A default model unloaded after its keep-alive reloads on the next request: still ready.
    if loaded or cloud_ready or pool.loadable(settings.engine.default_model):
        return JSONResponse({"status": "ready", **body})
    failure = pool.failure(settings.engine.default_model)
    reason = failure or "No model is loaded yet (the default model loads at start-up or on first request)."
    body["error"] = {"message": reason, "type": "server_error", "param": None, "code": "model_not_ready"}
    return JSONResponse({"status": "not_ready", **body}, status_code=503)
