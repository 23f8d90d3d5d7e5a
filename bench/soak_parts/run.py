"""One soak run: a fake cloud with faults, a real Pensieve server bursting to it, N clients for M minutes.

`run_soak` starts both servers on loopback, runs the clients, the fault schedule and the RSS sampler
together on one event loop, then compares the ledger with the fake's bills and returns a `SoakResult`
(printed by `report.py`).
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common import ServerHandle, start_server
from soak_parts.clients import ClientPlan, run_client
from soak_parts.faults import inject_faults
from soak_parts.monitor import (
    Reconciliation,
    RssGrowth,
    RssSample,
    Spend,
    collect_decisions,
    reconcile,
    rss_growth,
    sample_rss,
    settle_spend,
)
from soak_parts.outcome import Outcome
from support.fake_cloud import FakeCloud
from support.models import find_real_model

CLOUD_KEY = "sk-soak-fake-cloud"
# USD per million tokens: round numbers, large enough that a token's difference shows in the USD column.
PRICES = (10.0, 30.0)
WARM_UP_FRACTION = 0.2


@dataclass
class SoakConfig:
    """What to run: how many clients for how long, and the knobs of the faults and the sampling."""

    clients: int = 16
    minutes: float = 10.0
    seed: int = 1
    fault_interval_s: float = 1.0  # least pause between two queued faults (see faults.py)
    rss_every_s: float = 3.0
    flaky_fraction: float = 0.25
    hang_after_s: float = 180.0
    model: Path | None = None  # None: PENSIEVE_TEST_MODEL, the repository's models folder, or installed
    work_dir: Path | None = None  # None: a new temporary folder (kept, so the server log can be read)


@dataclass
class SoakResult:
    """Everything the report shows."""

    config: SoakConfig
    outcomes: list[Outcome]
    samples: list[RssSample]
    growth: RssGrowth
    spend: Spend
    reconciliation: Reconciliation
    faults: Counter[str]
    duration_s: float
    server_log: Path
    log_problems: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def server_env(cloud: FakeCloud) -> dict[str, str]:
    """The server's settings: the fake as the one provider, short cloud timeouts, a budget that holds."""
    return {
        "PENSIEVE_CLOUD_NAME": "fake",
        "PENSIEVE_CLOUD_BASE_URL": cloud.base_url,
        "PENSIEVE_CLOUD_API_KEY": CLOUD_KEY,
        "PENSIEVE_CLOUD_MODEL": "big-model",
        "PENSIEVE_CLOUD_PRICE_INPUT": str(PRICES[0]),
        "PENSIEVE_CLOUD_PRICE_OUTPUT": str(PRICES[1]),
        # Short, so hangs and stalls end in the server's own timeout error well within a soak.
        "PENSIEVE_CLOUD_TIMEOUT_SECONDS": "8",
        "PENSIEVE_CLOUD_FIRST_TOKEN_TIMEOUT_SECONDS": "3",
        "PENSIEVE_CLOUD_CIRCUIT_COOLDOWN_SECONDS": "3",
        # A budget is enforced (reservations and all) but set high enough not to end the cloud traffic.
        "PENSIEVE_BUDGET_DAILY_USD": "100",
        "PENSIEVE_BUDGET_MONTHLY_USD": "1000",
        "PENSIEVE_LOG_LEVEL": "INFO",
    }


def log_problems(log: Path, limit: int = 40) -> list[str]:
    """The server log's error lines and tracebacks (the first `limit`), for the report."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    marks = ("ERROR", "CRITICAL", "Traceback", "Exception")
    return [line[:300] for line in lines if any(mark in line for mark in marks)][:limit]


async def _soak(handle: ServerHandle, cloud: FakeCloud, config: SoakConfig) -> SoakResult:
    """Clients, faults and the sampler together; then the spend once everything has ended."""
    started = time.monotonic()
    duration = config.minutes * 60.0
    plan = ClientPlan(
        handle.base_url,
        handle.model_id,
        started + duration,
        flaky_fraction=config.flaky_fraction,
        hang_after_s=config.hang_after_s,
    )
    outcomes: list[Outcome] = []
    stop, decisions_read = asyncio.Event(), asyncio.Event()
    decisions = asyncio.create_task(collect_decisions(handle.base_url, decisions_read))
    sampler = asyncio.create_task(sample_rss(handle.process.pid, started, stop, config.rss_every_s))
    faults = asyncio.create_task(inject_faults(cloud, plan.deadline, config.fault_interval_s, config.seed))
    await asyncio.gather(*(run_client(i, plan, config.seed, outcomes.append) for i in range(config.clients)))
    stop.set()
    samples, queued = await sampler, await faults
    ended = time.monotonic()
    spend = await settle_spend(handle.base_url, cloud, PRICES)
    decisions_read.set()
    matched = reconcile(await decisions, cloud.bills)
    return SoakResult(
        config=config,
        outcomes=outcomes,
        samples=samples,
        growth=rss_growth(samples, WARM_UP_FRACTION * duration),
        spend=spend,
        reconciliation=matched,
        faults=queued,
        duration_s=ended - started,
        server_log=handle.log_path,
    )


def run_soak(config: SoakConfig) -> SoakResult:
    """Start the fake cloud and the server, soak, stop both; the result holds the server log's problems."""
    work_dir = config.work_dir or Path(tempfile.mkdtemp(prefix="pensieve-soak-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    model = config.model or find_real_model(work_dir)
    # chunk_delay: a real provider's pace, so streams overlap and a client can leave mid-stream.
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.02, hang_seconds=20) as cloud:
        ready = time.monotonic()
        handle = start_server("soak", model, work_dir / "server", server_env(cloud))
        facts = {
            "model": model.name,
            "server_ready_s": f"{time.monotonic() - ready:.1f}",
            "cores": str(len(os.sched_getaffinity(0))),
            "load_average_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(),
        }
        try:
            result = asyncio.run(_soak(handle, cloud, config))
        finally:
            handle.stop()
    result.facts = {
        **facts,
        "load_average_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cloud_calls": str(len(cloud.requests)),
    }
    result.log_problems = log_problems(handle.log_path)
    return result
