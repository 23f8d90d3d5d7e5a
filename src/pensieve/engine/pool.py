"""The model pool: resolves model ids to loaded engines, loading on first use.

A file that fails to load is remembered by (size, mtime) so repeated requests fail fast with the same
clear error instead of re-reading a broken file; replacing the file clears the failure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pensieve.config import Settings
from pensieve.engine.llamacpp.runtime import LlamaConfig, LlamaLoadError
from pensieve.engine.local_engine import LocalEngine
from pensieve.engine.registry import ModelInfo, ModelRegistry
from pensieve.errors import ModelLoadError, ModelNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Failure:
    size_bytes: int
    modified_ns: int
    message: str


def normalise_model_id(model_id: str) -> str:
    """Accept "name.gguf" and surrounding spaces as well as the bare id."""
    cleaned = model_id.strip()
    return cleaned.removesuffix(".gguf") if cleaned.endswith(".gguf") else cleaned


class ModelPool:
    """Loaded LocalEngines by model id, with load-on-demand and remembered load failures."""

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._engines: dict[str, LocalEngine] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, _Failure] = {}

    @property
    def config(self) -> LlamaConfig:
        """llama.cpp load parameters from the settings."""
        settings = self.settings
        return LlamaConfig(
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_threads=settings.resolved_n_threads,
            n_threads_batch=settings.resolved_n_threads_batch,
            n_parallel=settings.resolved_parallel,
            kv_cells=settings.kv_cache_tokens,
        )

    def loaded(self) -> list[LocalEngine]:
        """Engines currently in memory."""
        return list(self._engines.values())

    def failure(self, model_id: str) -> str | None:
        """The remembered load error of a model, if its last load failed."""
        failure = self._failures.get(model_id)
        return failure.message if failure else None

    async def available_models(self) -> list[ModelInfo]:
        """Every installed model file (usable or not), from a fresh scan."""
        return await asyncio.to_thread(self.registry.scan)

    async def get(self, model_id: str) -> LocalEngine:
        """The loaded engine for `model_id`, loading it first if needed."""
        model_id = normalise_model_id(model_id)
        engine = self._engines.get(model_id)
        if engine is not None and engine.alive:
            return engine
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            engine = self._engines.get(model_id)
            if engine is not None and not engine.alive:
                # Its worker process died (crash, OOM kill): start a fresh one.
                logger.warning("model %s: %s; restarting its worker", model_id, engine.worker.failure)
                self._engines.pop(model_id, None)
                await engine.close()
                engine = None
            if engine is None:
                engine = await self._load(model_id)
                self._engines[model_id] = engine
        return engine

    async def _load(self, model_id: str) -> LocalEngine:
        info = await asyncio.to_thread(self.registry.get, model_id)
        if info is None:
            installed = ", ".join(m.id for m in await self.available_models() if m.usable) or "none"
            raise ModelNotFoundError(
                f"The model '{model_id}' does not exist. Installed models: {installed}.", param="model"
            )
        failure = self._failures.get(model_id)
        if failure and (failure.size_bytes, failure.modified_ns) == (info.size_bytes, info.modified_ns):
            raise ModelLoadError(failure.message)
        if info.error is not None:
            raise self._remember(info, f"Model '{model_id}' cannot be loaded: {info.error}.")
        try:
            engine = await LocalEngine.load(
                info,
                self.config,
                chat_format=self.settings.chat_format,
                default_max_tokens=self.settings.default_max_tokens,
                max_queue=self.settings.max_queue,
                log_level=self.settings.log_level,
            )
        except (LlamaLoadError, OSError) as exc:
            raise self._remember(info, f"Model '{model_id}' cannot be loaded: {exc}.") from exc
        self._failures.pop(model_id, None)
        return engine

    def _remember(self, info: ModelInfo, message: str) -> ModelLoadError:
        logger.error("%s", message)
        self._failures[info.id] = _Failure(info.size_bytes, info.modified_ns, message)
        return ModelLoadError(message)

    async def unload(self, model_id: str) -> bool:
        """Free a loaded model; False when it was not loaded."""
        engine = self._engines.pop(normalise_model_id(model_id), None)
        if engine is None:
            return False
        await engine.close()
        return True

    async def close(self) -> None:
        """Unload every model (server shutdown)."""
        for model_id in list(self._engines):
            await self.unload(model_id)
