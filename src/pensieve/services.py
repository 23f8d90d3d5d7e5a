"""Every long-lived service of one server, built from the settings, reconfigured and closed together.

The lifespan in `app.py` builds one `Services` and keeps it on `app.state.services`; `pensieve.api.deps`
hands each route the one service it uses. A settings change goes through `reconfigure(new)` only, so
no service is forgotten when a setting starts to matter somewhere new.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pensieve.burst.accounting import RunRecorder
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.options import BurstOptions, check_burst_settings, privacy_scanner
from pensieve.burst.planner import RoutePlanner
from pensieve.burst.stats import DecisionLog
from pensieve.cloud.registry import CloudRegistry
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelRegistry
from pensieve.errors import PensieveError
from pensieve.files.store import FileStore
from pensieve.observability import Metrics, ProcessClock
from pensieve.persistence.database import Database
from pensieve.persistence.retention import RetentionSweeper
from pensieve.pull_jobs import PullJobs
from pensieve.rate_limits import RateLimiter
from pensieve.schemas.requests import RequestDefaults
from pensieve.serving import ChatServing, CompletionServing
from pensieve.sessions import SessionStore

logger = logging.getLogger(__name__)

# The cloud spend ledger (numbers only) under PENSIEVE_DATA_DIR; it survives restarts.
LEDGER_FILE = "spend.sqlite3"


@dataclass
class Services:
    """The services of one running server."""

    settings: Settings
    env_file: Path  # where POST /api/admin/settings/save writes
    pool: ModelPool
    cloud: CloudRegistry
    ledger: SpendLedger
    decisions: DecisionLog
    metrics: Metrics
    planner: RoutePlanner
    recorder: RunRecorder
    chat: ChatServing
    completions: CompletionServing
    process: ProcessClock
    rate_limiter: RateLimiter
    database: Database  # sessions and file records: in memory unless PENSIEVE_PERSIST=sqlite
    sessions: SessionStore  # conversations, on `database`
    retention: RetentionSweeper  # PENSIEVE_RETENTION_DAYS: old sessions and files deleted on a schedule
    files: FileStore  # uploads: bytes under data_dir/uploads (persistent) or a temporary folder
    pulls: PullJobs = field(default_factory=PullJobs)  # model downloads from a hub (POST /api/models/pull)

    @classmethod
    def build(cls, settings: Settings, env_file: Path) -> Services:
        """Build every service for `settings` (nothing is loaded or started yet: see `start`)."""
        check_burst_settings(settings)
        pool = ModelPool(
            settings.engine,
            ModelRegistry(settings.engine.models_dir),
            default_max_tokens=settings.sampling.max_tokens,
            log_level=settings.server.log_level,
        )
        cloud = CloudRegistry.from_settings(settings.cloud)
        ledger = SpendLedger.open(settings.persistence.data_dir / LEDGER_FILE)
        decisions, metrics = DecisionLog(), Metrics()
        pool.on_worker_event = metrics.worker_event
        planner = RoutePlanner(BurstOptions.from_settings(settings), pool, cloud, ledger)
        recorder = RunRecorder(ledger, decisions, metrics, cloud)
        defaults = RequestDefaults.of(settings)
        database = Database.open(settings.persistence)
        sessions = SessionStore(database)
        files = FileStore(database, settings.files, privacy_scanner(settings), settings.persistence.data_dir)
        return cls(
            settings=settings,
            env_file=env_file,
            pool=pool,
            cloud=cloud,
            ledger=ledger,
            decisions=decisions,
            metrics=metrics,
            planner=planner,
            recorder=recorder,
            chat=ChatServing(defaults, planner, pool, cloud, recorder, sessions=sessions, files=files),
            completions=CompletionServing(defaults, planner, pool, cloud, recorder),
            process=ProcessClock(),
            rate_limiter=RateLimiter(settings.server),
            database=database,
            sessions=sessions,
            files=files,
            retention=RetentionSweeper(
                [sessions.purge_older_than, files.purge_older_than], settings.persistence.retention_days
            ),
        )

    async def start(self) -> None:
        """Start the pool's keep-alive task and the retention sweeps and, when configured, load the default model."""
        self.pool.start()
        self.retention.start()
        if self.database.persistent:  # the files kept from the last run get their indexes back
            count = await asyncio.to_thread(self.files.rebuild_indexes)
            logger.info("files: %d stored file(s) indexed from %s", count, self.files.folder)
        if self.cloud.configured:
            models = ", ".join(self.cloud.model_ids())
            logger.info("cloud models: %s (auto bursts to %s)", models, self.cloud.default_model_id)
        if self.settings.engine.preload_default_model:
            await self._preload_default()

    async def _preload_default(self) -> None:
        """Load the default model so the first request does not pay for it; a failure is logged, not fatal."""
        try:
            engine = await self.pool.get(self.settings.engine.default_model, reserve=False)
        except PensieveError as exc:
            logger.error("default model not loaded: %s", exc.message)
            return
        logger.info("default model %s ready (context %d tokens)", engine.model_id, engine.context_length)

    async def reconfigure(self, new: Settings) -> None:
        """Switch every running service to `new` settings (SettingsError if they are inconsistent).

        Settings read only at start-up (socket, folders, thread counts) wait for a restart: the admin
        view marks them.
        """
        check_burst_settings(new)
        old, self.settings = self.settings, new
        self.planner.reconfigure(BurstOptions.from_settings(new))
        self.pool.reconfigure(new.engine, default_max_tokens=new.sampling.max_tokens)
        self.chat.defaults = self.completions.defaults = RequestDefaults.of(new)
        self.rate_limiter.reconfigure(new.server)
        self.retention.days = new.persistence.retention_days
        self.files.settings, self.files.scanner = new.files, privacy_scanner(new)
        if old.cloud != new.cloud:  # otherwise the circuit breakers keep their state
            await self.cloud.reconfigure(new.cloud)

    async def close(self) -> None:
        """Stop the model downloads, unload every model, close the cloud clients, the ledger, the files (a
        temporary folder is removed) and the database."""
        await self.retention.close()
        await self.pulls.close()
        await self.pool.close()
        await self.cloud.close()
        self.ledger.close()
        self.files.close()
        self.database.close()
