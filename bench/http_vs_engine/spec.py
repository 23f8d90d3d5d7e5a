"""What a run of the HTTP-vs-engine bench is: backends, endpoints, prompts, samples and their statistics."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import median, percentile

ENGINE, HTTP, BASELINE = "engine", "http", "llama-cpp"
COMPLETIONS, CHAT = "completions", "chat"
ENDPOINTS = (COMPLETIONS, CHAT)
# The most negative logit bias the OpenAI API (and Pensieve) accepts; with greedy decoding it is a ban.
BAN_BIAS = -100
READY_TIMEOUT_S = 120.0
WARMUP_TOKENS = 32
WORKER_FLAG = "--baseline-worker"
# A run during which the rest of the machine kept more than this many cores busy is flagged as disturbed.
NOISY_CORES = 0.25
# Leading words of the prompts: a different first token per run keeps the prompt-prefix (KV) cache cold.
LEADS = (
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliet", "Kilo", "Lima",
    "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango", "Uniform", "Victor", "Whiskey",
)  # fmt: skip
PASSAGE = (
    "The lighthouse on the northern cape was built in 1858 from granite quarried a few miles inland.",
    "For more than a century its keepers trimmed the wicks, wound the clockwork and logged every passing ship.",
    "Storms in the winter of 1903 cracked the lantern glass, and the keeper's daughter kept the light burning by hand.",
    "Electric lamps arrived in 1936, followed by a radio beacon that could be heard two hundred miles out to sea.",
    "Today the station is automated, and the keeper's cottage houses a small museum about coastal navigation.",
    "Visitors can climb the spiral staircase of one hundred and twelve steps to the gallery below the lantern.",
    "From there, on a clear day, the outline of three islands and the mouth of the river are easy to make out.",
    "The museum's collection includes brass instruments, hand-written logbooks and a lens made in Paris.",
    "Volunteers repaint the tower every seven years, choosing the same red and white bands the sailors relied on.",
    "Scientists also use the site to count migrating seabirds and to measure how fast the cliffs are eroding.",
    "Their records show the shoreline retreating by almost half a metre each year during the last two decades.",
    "Plans to move the tower further inland have been discussed, costed and postponed several times since then.",
    "Meanwhile the local school brings every new class to the cape, so that the children learn the light's story.",
    "Many of them come back as adults, some as volunteers, and a few as the engineers who maintain the beacon.",
)


# --- samples and their statistics -------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """Greedy decoding plus the server's default sampler settings, sent identically to every backend."""

    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float


@dataclass(frozen=True)
class RunSpec:
    """One generation to run: the endpoint, its prompt (or user message) and the tokens to ban."""

    endpoint: str
    text: str
    max_tokens: int
    ban: tuple[int, ...]
    sampling: Sampling
    round: int  # -1 for warm-up runs


@dataclass
class Sample:
    """One measured generation."""

    backend: str
    endpoint: str
    round: int
    prompt_tokens: int
    completion_tokens: int
    content_chunks: int
    ttft_s: float
    decode_s: float  # from the first to the last content chunk
    total_s: float
    finish_reason: str
    cpu_s: float  # CPU time of the process that generated (this one, or the server)
    client_cpu_s: float | None = None  # CPU time of this process while it was the HTTP client
    other_cores: float = math.nan  # CPU the rest of the machine used meanwhile (other processes, steal), in cores

    @property
    def decode_tps(self) -> float:
        """Tokens per second after the first token: (n - 1) / (t_last - t_first)."""
        if self.completion_tokens < 2 or self.decode_s <= 0:
            return math.nan
        return (self.completion_tokens - 1) / self.decode_s


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (user, system, irq, steal) since boot; NaN off Linux."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first_line.split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class StreamClock:
    """Timestamps of a stream: its start, its first and its last non-empty content chunk."""

    def __init__(self) -> None:
        self.machine_busy = machine_busy_seconds()
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last = self.start
        self.chunks = 0

    def content(self) -> None:
        """Record a chunk that carried text."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.chunks += 1

    def sample(self, backend: str, spec: RunSpec, prompt_tokens: int, completion_tokens: int, **extra: Any) -> Sample:
        """The measurement of a finished stream."""
        end = time.perf_counter()
        first = self.first if self.first is not None else end
        # Whatever the machine's cores did beyond the benchmark's own processes is interference.
        ours = float(extra.get("cpu_s", 0.0)) + float(extra.get("client_cpu_s") or 0.0)
        busy = machine_busy_seconds() - self.machine_busy
        other = max(0.0, busy - ours) / (end - self.start) if end > self.start else math.nan
        return Sample(
            backend=backend,
            endpoint=spec.endpoint,
            round=spec.round,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            content_chunks=self.chunks,
            ttft_s=first - self.start,
            decode_s=self.last - first,
            total_s=end - self.start,
            other_cores=other,
            **extra,
        )


@dataclass
class Summary:
    """The statistics of one backend on one endpoint."""

    backend: str
    endpoint: str
    runs: int
    prompt_tokens: int
    completion_tokens_min: int
    tps_median: float
    tps_min: float
    tps_max: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    cpu_cores: float  # median CPU seconds per wall second of the generating process
    other_cores: float  # median CPU the rest of the machine used during the runs, in cores
    client_cpu_ms_per_token: float | None


@dataclass
class Comparison:
    """HTTP against the raw engine on one endpoint, from per-round pairs (adjacent runs share the noise)."""

    endpoint: str
    pairs: int
    tps_ratio: float  # median over rounds of http_tps / engine_tps
    tps_ratio_of_medians: float
    ttft_ratio: float  # median over rounds of http_ttft / engine_ttft
    ttft_delta_ms: float  # median over rounds of http_ttft - engine_ttft
    overhead_ms_per_token: float  # median over rounds of 1000/http_tps - 1000/engine_tps
    target: float
    passed: bool


def summarise(samples: Sequence[Sample], backend: str, endpoint: str) -> Summary | None:
    """Statistics of the measured (non-warm-up) runs of one backend on one endpoint."""
    runs = [s for s in samples if s.backend == backend and s.endpoint == endpoint and s.round >= 0]
    if not runs:
        return None
    speeds = [s.decode_tps for s in runs]
    ttfts = [s.ttft_s * 1000 for s in runs]
    client = [1000 * s.client_cpu_s / s.completion_tokens for s in runs if s.client_cpu_s is not None]
    return Summary(
        backend=backend,
        endpoint=endpoint,
        runs=len(runs),
        prompt_tokens=int(median([float(s.prompt_tokens) for s in runs])),
        completion_tokens_min=min(s.completion_tokens for s in runs),
        tps_median=median(speeds),
        tps_min=min(speeds),
        tps_max=max(speeds),
        ttft_p50_ms=percentile(ttfts, 0.5),
        ttft_p95_ms=percentile(ttfts, 0.95),
        cpu_cores=median([s.cpu_s / s.total_s for s in runs if s.total_s > 0]),
        other_cores=median([s.other_cores for s in runs]),
        client_cpu_ms_per_token=median(client) if client else None,
    )


def compare(
    samples: Sequence[Sample], endpoint: str, target: float, base: str = ENGINE, other: str = HTTP
) -> Comparison | None:
    """Pair `other` with `base` round by round on one endpoint."""
    by_round: dict[int, dict[str, Sample]] = {}
    for s in samples:
        if s.endpoint == endpoint and s.round >= 0 and s.backend in (base, other):
            by_round.setdefault(s.round, {})[s.backend] = s
    pairs = [(runs[base], runs[other]) for runs in by_round.values() if base in runs and other in runs]
    if not pairs:
        return None
    ratio = median([o.decode_tps / b.decode_tps for b, o in pairs])
    medians = median([o.decode_tps for _, o in pairs]) / median([b.decode_tps for b, _ in pairs])
    return Comparison(
        endpoint=endpoint,
        pairs=len(pairs),
        tps_ratio=ratio,
        tps_ratio_of_medians=medians,
        ttft_ratio=median([o.ttft_s / b.ttft_s for b, o in pairs]),
        ttft_delta_ms=median([1000 * (o.ttft_s - b.ttft_s) for b, o in pairs]),
        overhead_ms_per_token=median([1000 / o.decode_tps - 1000 / b.decode_tps for b, o in pairs]),
        target=target,
        passed=ratio >= target,
    )
