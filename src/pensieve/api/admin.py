"""Admin routes for the UI and operators: live settings, `.env` saving, process figures, model load/unload/install."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse

from pensieve.api.access import admin_caller
from pensieve.api.deps import PoolDep, ServicesDep, SettingsDep
from pensieve.config import SettingsError
from pensieve.errors import InvalidRequestError, PensieveError
from pensieve.model_install import install_default_model
from pensieve.settings_admin import describe_settings, save_env_file, updated_settings
from pensieve.units import parse_duration_seconds

router = APIRouter(prefix="/api", tags=["Admin"], dependencies=[Depends(admin_caller)])


@router.get("/admin/settings")
async def read_settings(services: ServicesDep) -> dict[str, Any]:
    """Every setting (secrets masked), grouped, with descriptions, types and which need a restart."""
    return describe_settings(services.settings, services.env_file)


@router.patch("/admin/settings")
async def change_settings(
    services: ServicesDep,
    changes: dict[str, Any] = Body(..., examples=[{"PENSIEVE_BURST_COMPLEXITY_THRESHOLD": 0.5}]),  # noqa: B008
) -> dict[str, Any]:
    """Apply `{PENSIEVE_KEY: value}` to the running server (not to `.env`: POST /api/admin/settings/save)."""
    try:
        new = updated_settings(services.settings, changes)
        await services.reconfigure(new)
    except SettingsError as exc:
        raise InvalidRequestError(str(exc), code="invalid_setting") from exc
    return describe_settings(new, services.env_file)


@router.post("/admin/settings/save")
async def save_settings(services: ServicesDep) -> dict[str, str]:
    """Write the running settings to `.env` (existing lines and comments are kept in place)."""
    try:
        path = await asyncio.to_thread(save_env_file, services.settings, services.env_file)
    except SettingsError as exc:
        raise InvalidRequestError(str(exc), code="invalid_setting") from exc
    return {"saved": str(path.resolve())}


class LoadOptions(BaseModel):
    """Optional body of POST /api/models/{id}/load."""

    model_config = ConfigDict(extra="ignore")
    keep_alive: float | str | None = Field(
        None, description="Seconds or a duration such as '5m' the model stays loaded when idle; -1 = never."
    )

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: float | str | None) -> float | None:
        return None if value is None else parse_duration_seconds(value)


@router.post("/models/{model_id}/load")
async def load_model(model_id: str, pool: PoolDep, options: LoadOptions | None = None) -> dict[str, Any]:
    """Load a local model now (it also loads on demand), unloading idle ones if limits need it.

    404 if unknown, 500 if the file is broken, 400 `model_too_large` if it exceeds PENSIEVE_MEMORY_LIMIT on
    its own, 503 with Retry-After if the loaded models in the way are busy.
    """
    engine = await pool.get(model_id, reserve=False)
    if options is not None and options.keep_alive is not None:
        pool.set_keep_alive(engine.model_id, float(options.keep_alive))
    return {
        "id": engine.model_id,
        "loaded": True,
        "context_length": engine.context_length,
        "keep_alive_seconds": pool.keep_alive_for(engine.model_id),
    }


@router.post("/models/{model_id}/unload")
async def unload_model(model_id: str, pool: PoolDep) -> dict[str, Any]:
    """Free a loaded model's memory; `unloaded` is false when it was not loaded, 404 if no such model exists."""
    return {"id": model_id, "unloaded": await pool.unload(model_id, must_exist=True)}


@router.post("/models/install-default")
async def install_default(settings: SettingsDep) -> EventSourceResponse:
    """Assemble and verify the default model, streaming `{"stage", "done", "total"}` progress events."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    last_sent = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        # Several thousand blocks: forward at most ~10 updates a second, and always the last one.
        now = time.monotonic()
        if done >= total or now - last_sent[0] > 0.1:
            last_sent[0] = now
            loop.call_soon_threadsafe(queue.put_nowait, {"stage": stage, "done": done, "total": total})

    async def run(models_dir: Path) -> None:
        try:
            path = await asyncio.to_thread(install_default_model, models_dir, show_progress=False, on_progress=progress)
            await queue.put({"status": "installed", "path": str(path)})
        except Exception as exc:  # reported to the client as an error event
            error = exc if isinstance(exc, PensieveError) else PensieveError(f"Installing the model failed: {exc}")
            await queue.put(error.to_body())

    task = asyncio.create_task(run(settings.engine.models_dir))

    async def events() -> AsyncGenerator[dict[str, str], None]:
        while True:
            item = await queue.get()
            yield {"data": json.dumps(item)}
            if "status" in item or "error" in item:
                break
        await task
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n")
