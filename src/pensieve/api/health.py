"""Liveness and readiness probes: GET /health (the process answers) and GET /ready (a model can serve)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pensieve import __version__
from pensieve.api.deps import ControllerDep, PoolDep, SettingsDep

router = APIRouter(tags=["Health"])


@router.get("/health")
async def health() -> dict[str, Any]:
    """Always 200 while the server process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(pool: PoolDep, settings: SettingsDep, controller: ControllerDep) -> JSONResponse:
    """200 when a loaded (or idle-unloaded) model, or a cloud model with a closed circuit, can serve; else 503."""
    loaded = [engine.model_id for engine in pool.loaded()]
    cloud = controller.cloud
    cloud_ready = [m for m in cloud.model_ids() if cloud.breaker(m).would_allow()]
    body: dict[str, Any] = {
        "default_model": settings.default_model,
        "loaded_models": loaded,
        "cloud_models_ready": cloud_ready,
        "local_error": pool.failure(settings.default_model),
    }
    # A default model unloaded after its keep-alive reloads on the next request: still ready.
    if loaded or cloud_ready or pool.loadable(settings.default_model):
        return JSONResponse({"status": "ready", **body})
    failure = pool.failure(settings.default_model)
    reason = failure or "No model is loaded yet (the default model loads at start-up or on first request)."
    body["error"] = {"message": reason, "type": "server_error", "param": None, "code": "model_not_ready"}
    return JSONResponse({"status": "not_ready", **body}, status_code=503)
