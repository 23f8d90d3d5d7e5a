"""The model pool: resolves model ids to loaded engines, loading on first use and unloading what is not used.

A file that fails to load is remembered by (size, mtime) so repeated requests fail fast with the same
clear error instead of re-reading a broken file; replacing the file clears the failure. A transient failure
(the worker killed from outside, a load timeout) is retried after a short back-off (see `failures.py`). A
worker that dies while serving is restarted by the next request for its model; its crash (when, exit code,
signal, message) stays on record (`failures`) for /api/ps and /ready, marked recovered once a new worker has loaded.

Residency (see `residency.py` for the rules): at most PENSIEVE_MAX_LOADED_MODELS models and an estimated
PENSIEVE_MEMORY_LIMIT bytes are loaded; loading one more first unloads the least recently used idle ones.
A background task unloads models idle longer than their keep-alive (PENSIEVE_KEEP_ALIVE, or the last
`keep_alive` a request or load gave for that model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pensieve.engine.failures import FailureLog, ModelFailure
from pensieve.engine.llamacpp.runtime import LlamaConfig, LlamaLoadError
from pensieve.engine.local_engine import LocalEngine
from pensieve.engine.memory import (
    MemoryEstimate,
    choose_kv_layout,
    estimate_memory,
    planned_kv_cells,
)
from pensieve.engine.model_config import llama_config, model_engine_settings
from pensieve.engine.registry import ModelInfo, ModelRegistry, normalise_model_id
from pensieve.engine.residency import Resident, expires_at, is_busy, is_expired, plan_admission
from pensieve.engine.worker_client import WorkerCrashError, WorkerLoadTimeoutError
from pensieve.errors import ModelNotFoundError, PensieveError
from pensieve.settings_sections import EngineSettings

logger = logging.getLogger(__name__)

# The keep-alive task wakes at least this often: it notices requests in flight (their end is when the
# idle time starts) and keep-alives that a request changed.
KEEP_ALIVE_TICK_SECONDS = 1.0
# Retry-After for a load refused because the models in the way are busy, before any request has finished.
_ASSUMED_SERVICE_SECONDS = 2.0


class ModelPool:
    """Loaded LocalEngines by model id, with load-on-demand, eviction, keep-alive and remembered load failures."""

    def __init__(
        self,
        settings: EngineSettings,
        registry: ModelRegistry,
        *,
        default_max_tokens: int = 0,
        log_level: str = "info",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.default_max_tokens = default_max_tokens  # PENSIEVE_DEFAULT_MAX_TOKENS, handed to each engine
        self.log_level = log_level  # the workers log at the server's level
        self.registry = registry
        self._clock = clock
        self._engines: dict[str, LocalEngine] = {}
        # Per-model load locks, kept only while someone uses them: client-chosen ids never grow this.
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        self._failures = FailureLog()
        # One load at a time: the eviction decision and the memory it budgets must not interleave.
        self._load_lock = asyncio.Lock()
        self._estimates: dict[str, MemoryEstimate] = {}
        self._keep_alive: dict[str, float] = {}  # per-model overrides from requests and loads
        self._holds: dict[str, int] = {}
        self._handed_out: dict[str, float] = {}
        self._active_at: dict[str, float] = {}  # end of the last activity the pool saw
        self._ever_loaded: set[str] = set()
        self._keep_alive_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Told ("crash" | "restart", model id) once per worker crash and restart; the services wire the metrics.
        self.on_worker_event: Callable[[str, str], None] = lambda _event, _model: None

    def reconfigure(self, settings: EngineSettings, *, default_max_tokens: int) -> None:
        """Use new settings: limits and keep-alive apply now, load parameters to the next load."""
        self.settings = settings
        self.default_max_tokens = default_max_tokens
        self._wake.set()  # a shorter keep-alive may expire a model now

    @property
    def config(self) -> LlamaConfig:
        """llama.cpp load parameters from the settings."""
        return llama_config(self.settings)

    def loaded(self) -> list[LocalEngine]:
        """Engines currently in memory (a worker that died is not: the next request for it restarts it)."""
        return [engine for engine in self._engines.values() if engine.alive]

    def failure(self, model_id: str) -> str | None:
        """The remembered load error of a model, if its last load failed."""
        failure = self._failures.load_failure(model_id)
        return failure.message if failure else None

    def current_failure(self, model_id: str) -> ModelFailure | None:
        """What keeps a model from serving now: its load failure, or a crash no successful load has followed."""
        self.notice_crashes()
        return self._failures.current(self.canonical(model_id))

    def failures(self) -> list[ModelFailure]:
        """Per model that failed: its remembered load failure, else its last worker crash (recovered or not)."""
        self.notice_crashes()
        return self._failures.all()

    def notice_crashes(self) -> None:
        """Put on record (and tell `on_worker_event`) the workers that died since the last look."""
        for engine in self._engines.values():
            self._note_crash(engine)

    def _note_crash(self, engine: LocalEngine) -> None:
        crash = engine.worker.crash
        if crash is not None and self._failures.crashed(crash):
            self.on_worker_event("crash", crash.model_id)

    def loadable(self, model_id: str) -> bool:
        """True when the model loaded in this process before and has not failed since (it reloads on demand)."""
        return model_id in self._ever_loaded and self._failures.load_failure(model_id) is None

    def canonical(self, model_id: str) -> str:
        """The model id a requested id stands for: `x.gguf` is `x`, an alias (models/<id>.toml) its model."""
        return self.registry.canonical(normalise_model_id(model_id))

    @property
    def models_dir(self) -> Path:
        """The folder scanned for model files."""
        return self.registry.models_dir

    async def available_models(self) -> list[ModelInfo]:
        """Every installed model file (usable or not), from a fresh scan."""
        return await asyncio.to_thread(self.registry.scan)

    async def get(self, model_id: str, *, reserve: bool = True) -> LocalEngine:
        """The loaded engine for `model_id`, loading it first if needed.

        `reserve` keeps the engine from eviction and expiry for a few seconds, until the caller's request
        starts on it; an admin load or the start-up preload passes False.
        """
        model_id = self.canonical(model_id)
        engine = self._engines.get(model_id)
        if engine is None or not engine.alive:
            if model_id not in self._engines:  # an alias added since the last scan resolves after a fresh one
                await self.available_models()
                model_id = self.canonical(model_id)
            engine = await self._get_slow(model_id)
        if reserve:
            self._handed_out[model_id] = self._clock()
        return engine

    async def _get_slow(self, model_id: str) -> LocalEngine:
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        self._lock_users[model_id] = self._lock_users.get(model_id, 0) + 1
        try:
            return await self._load_once(model_id, lock)
        finally:
            self._lock_users[model_id] -= 1
            if not self._lock_users[model_id]:
                del self._lock_users[model_id]
                self._locks.pop(model_id, None)

    async def _load_once(self, model_id: str, lock: asyncio.Lock) -> LocalEngine:
        """Under the model's lock: the loaded engine, or a fresh worker when there is none or it died."""
        async with lock:
            engine = self._engines.get(model_id)
            restarting = engine is not None and not engine.alive
            if engine is not None and restarting:
                # Its worker process died (crash, OOM kill): start a fresh one; `_forget` keeps the crash on record.
                logger.warning("restarting the worker of model %s: %s", model_id, engine.worker.failure)
                self._forget(model_id)
                await engine.close()
                engine = None
            if engine is None:
                async with self._load_lock:
                    engine = await self._load(model_id)
                self._engines[model_id] = engine
                self._ever_loaded.add(model_id)
                self._active_at[model_id] = self._clock()
                self._wake.set()
                if restarting:
                    self.on_worker_event("restart", model_id)
        return engine

    async def _installed(self, model_id: str) -> ModelInfo:
        """The model's file facts; ModelNotFoundError (404) naming the installed models when it has no file."""
        info = await asyncio.to_thread(self.registry.get, model_id)
        if info is None:
            installed = ", ".join(m.id for m in await self.available_models() if m.usable) or "none"
            raise ModelNotFoundError(
                f"The model '{model_id}' does not exist. Installed models: {installed}.", param="model"
            )
        return info

    async def _load(self, model_id: str) -> LocalEngine:
        info = await self._installed(model_id)
        now = time.time()
        failure = self._failures.load_failure_for_file(model_id, info.size_bytes, info.version_ns, now)
        if failure is not None:
            raise self._failures.refusal(failure, now)
        if info.error is not None:
            raise self._remember(info, f"Model '{model_id}' cannot be loaded: {info.error}.")
        settings = model_engine_settings(self.settings, info.settings)  # models/<id>.toml over the globals
        config = choose_kv_layout(info, llama_config(settings), settings.kv_layout)
        await self._make_room(model_id, estimate_memory(info, planned_kv_cells(info, config)))
        try:
            engine = await LocalEngine.load(
                info,
                config,
                chat_format=settings.chat_format,
                default_max_tokens=self.default_max_tokens,
                max_queue=self.settings.max_queue,
                log_level=self.log_level,
            )
        except (LlamaLoadError, OSError) as exc:
            raise self._remember(info, f"Model '{model_id}' cannot be loaded: {exc}.", exc) from exc
        self._failures.loaded(model_id, time.time())
        # The worker reports the cells it really allocated; the budget uses those from now on.
        self._estimates[model_id] = estimate_memory(info, engine.worker.facts.kv_size)
        return engine

    def _remember(self, info: ModelInfo, message: str, exc: BaseException | None = None) -> PensieveError:
        logger.error("%s", message)
        crash = exc if isinstance(exc, WorkerCrashError) else None  # the worker died: also its last crash
        transient = isinstance(exc, WorkerLoadTimeoutError) or (crash is not None and crash.transient)
        record = ModelFailure(info.id, "loading", message, time.time(), crash.exit_code if crash else None)
        self._failures.load_failed(
            record, info.size_bytes, info.version_ns, crashed=crash is not None, transient=transient
        )
        if crash is not None:
            self.on_worker_event("crash", info.id)
        return self._failures.refusal(record, record.at)

    async def _make_room(self, model_id: str, needed: MemoryEstimate) -> None:
        """Unload least recently used idle models until `model_id` fits, or raise why it cannot."""
        while True:
            # Planned afresh before each unload: a model may have become busy while the previous one closed.
            now = self._clock()
            residents = [self._resident(other, engine, now) for other, engine in self._engines.items()]
            busy = [self._engines[r.model_id] for r in residents if r.busy]
            services = [e.stats().recent_service_seconds or _ASSUMED_SERVICE_SECONDS for e in busy]
            victims = plan_admission(
                residents,
                model_id=model_id,
                needed=needed,
                memory_limit=self.settings.memory_limit,
                max_loaded=self.settings.max_loaded_models,
                retry_after_seconds=min(services, default=_ASSUMED_SERVICE_SECONDS),
            )
            if not victims:
                break
            logger.info("unloading model %s (least recently used) to make room for %s", victims[0], model_id)
            await self.unload(victims[0])
        logger.info("loading model %s: estimated %s", model_id, needed.describe())

    # --- keep-alive ---------------------------------------------------------------------------------

    def keep_alive_for(self, model_id: str) -> float:
        """Seconds `model_id` stays loaded when idle: its own keep-alive, else PENSIEVE_KEEP_ALIVE (-1 = forever)."""
        return self._keep_alive.get(model_id, self.settings.keep_alive)

    def set_keep_alive(self, model_id: str, seconds: float | None) -> None:
        """Give `model_id` its own keep-alive from now on (None leaves it unchanged)."""
        if seconds is None:
            return
        self._keep_alive[self.canonical(model_id)] = seconds
        self._wake.set()

    @contextlib.contextmanager
    def hold(self, model_id: str, keep_alive: float | None = None) -> Iterator[None]:
        """Keep `model_id` loaded while a response is produced; its idle time starts when the hold ends.

        `keep_alive` (a request's own) becomes the model's keep-alive from now on.
        """
        model_id = self.canonical(model_id)
        self.set_keep_alive(model_id, keep_alive)
        self._holds[model_id] = self._holds.get(model_id, 0) + 1
        try:
            yield
        finally:
            remaining = self._holds[model_id] - 1
            if remaining:
                self._holds[model_id] = remaining
            else:
                del self._holds[model_id]
            self._active_at[model_id] = self._clock()
            self._wake.set()  # a keep-alive of 0 unloads now

    def _resident(self, model_id: str, engine: LocalEngine, now: float) -> Resident:
        released = self._active_at.get(model_id, 0.0)
        busy = is_busy(
            in_flight=engine.worker.in_flight,
            holds=self._holds.get(model_id, 0),
            handed_out_at=self._handed_out.get(model_id),
            last_started_at=engine.last_used,
            released_at=released,
            now=now,
        )
        estimate = self._estimates.get(model_id)
        return Resident(
            model_id=model_id,
            busy=busy,
            idle_since=max(released, engine.last_used, self._handed_out.get(model_id, 0.0)),
            keep_alive=self.keep_alive_for(model_id),
            memory_bytes=estimate.total_bytes if estimate else engine.info.size_bytes,
        )

    def estimate(self, model_id: str) -> MemoryEstimate | None:
        """The memory estimate of a loaded model."""
        return self._estimates.get(model_id)

    def in_use(self, engine: LocalEngine) -> bool:
        """True while the engine is busy (requests in flight, held, or just handed out)."""
        return self._resident(engine.model_id, engine, self._clock()).busy

    def expires_in(self, engine: LocalEngine) -> float | None:
        """Seconds until an idle engine's keep-alive runs out (None while busy or kept forever)."""
        now = self._clock()
        deadline = expires_at(self._resident(engine.model_id, engine, now))
        return None if deadline is None else max(0.0, deadline - now)

    async def unload_expired(self) -> list[str]:
        """Unload every idle model whose keep-alive has run out; return their ids."""
        now = self._clock()
        expired = []
        for model_id, engine in list(self._engines.items()):
            resident = self._resident(model_id, engine, now)
            if resident.busy and engine.worker.in_flight:
                self._active_at[model_id] = now  # still generating: idle time starts after this
            elif is_expired(resident, now):
                expired.append(model_id)
        unloaded = []
        for model_id in expired:
            current = self._engines.get(model_id)
            # Checked again right before unloading: a request may have taken it while another one closed.
            if current is None or not is_expired(self._resident(model_id, current, self._clock()), self._clock()):
                continue
            logger.info("unloading model %s: idle longer than its keep-alive", model_id)
            await self.unload(model_id)
            unloaded.append(model_id)
        return unloaded

    def _next_check_in(self) -> float:
        now = self._clock()
        deadlines = [expires_at(self._resident(m, e, now)) for m, e in self._engines.items()]
        soonest = min((d for d in deadlines if d is not None), default=now + KEEP_ALIVE_TICK_SECONDS)
        return min(KEEP_ALIVE_TICK_SECONDS, max(0.0, soonest - now))

    async def _keep_alive_loop(self) -> None:
        while True:
            try:
                await self.unload_expired()
            except Exception:  # one failed unload must not stop the task for every model
                logger.exception("keep-alive check failed")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_check_in())

    def start(self) -> None:
        """Start the keep-alive task (the app lifespan calls this; `close` stops it)."""
        if self._keep_alive_task is None:
            self._keep_alive_task = asyncio.create_task(self._keep_alive_loop(), name="pensieve-keep-alive")

    # --- unloading ----------------------------------------------------------------------------------

    def _forget(self, model_id: str) -> LocalEngine | None:
        self._handed_out.pop(model_id, None)
        self._estimates.pop(model_id, None)
        engine = self._engines.pop(model_id, None)
        if engine is not None:
            self._note_crash(engine)
        return engine

    async def unload(self, model_id: str, *, must_exist: bool = False) -> bool:
        """Free a loaded model; False when it was not loaded (ModelNotFoundError instead, with `must_exist`,
        when no such model is installed: a client asking to unload a misspelt id learns so)."""
        model_id = self.canonical(model_id)
        engine = self._forget(model_id)
        if engine is None:
            if must_exist:
                await self._installed(model_id)
            return False
        await engine.close()
        return True

    async def close(self) -> None:
        """Stop the keep-alive task and unload every model (server shutdown)."""
        task, self._keep_alive_task = self._keep_alive_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for model_id in list(self._engines):
            await self.unload(model_id)
