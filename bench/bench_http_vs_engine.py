"""Single-stream speed of Pensieve through HTTP against its raw engine (and llama-cpp-python's `Llama`).

Measures decode tokens/s and time to first token (TTFT) of

* engine    - `LocalEngine` in this process, driven by asyncio: no HTTP, no JSON, no SSE;
* http      - the real `python -m pensieve serve` subprocess, streamed with the official `openai` SDK;
* llama-cpp - (with --with-baseline) llama-cpp-python's high-level `Llama.create_completion(stream=True)`,
              in a worker subprocess (two llama.cpp users in one process slow each other down, see
              BaselineWorker).

Backends never run at the same time: the server and the worker are SIGSTOPped while another backend
runs, and the in-process engine sits idle (no thread runs) while they run. Rounds interleave the backends, in a rotating
order. Every run decodes greedily, with the end-of-generation tokens banned, so it produces exactly
--max-tokens tokens; every round's prompt starts with a different word, so the prompt-prefix cache
cannot help. See bench/README.md for how to read the output.

    .venv/bin/python bench/bench_http_vs_engine.py [--rounds 5] [--max-tokens 128] [--with-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import openai

from pensieve import __version__ as pensieve_version
from pensieve.config import Settings
from pensieve.diagnostics.cpu_features import available_cores
from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.local_engine import LocalEngine
from pensieve.engine.registry import inspect_model_file
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile (fraction in 0..1); NaN for no values."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """Median ignoring NaNs; NaN for no values."""
    return percentile(values, 0.5)


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


# --- backends -----------------------------------------------------------------------------------------


class Backend(Protocol):
    """Something that runs a list of generations (one phase) and reports their samples."""

    name: str

    def supports(self, endpoint: str) -> bool:
        """Whether this backend can serve `endpoint`."""
        ...

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Run the generations one after the other."""
        ...

    def close(self) -> None:
        """Free everything."""
        ...


def engine_params(spec: RunSpec) -> SamplingParams:
    """The engine's sampling parameters for `spec`: greedy, with the banned tokens biased away."""
    return SamplingParams(
        max_tokens=spec.max_tokens,
        temperature=0.0,
        top_p=spec.sampling.top_p,
        top_k=spec.sampling.top_k,
        min_p=spec.sampling.min_p,
        repeat_penalty=spec.sampling.repeat_penalty,
        logit_bias=tuple((token, float(BAN_BIAS)) for token in spec.ban),
    )


class EngineBackend:
    """`LocalEngine` in this process, on a private event loop (the loop only runs during a phase)."""

    name = ENGINE

    def __init__(self, model_path: Path, config: LlamaConfig) -> None:
        self._loop = asyncio.new_event_loop()
        started = time.perf_counter()
        info = inspect_model_file(model_path)
        if info.error is not None:
            raise SystemExit(f"bench: {model_path} is not usable: {info.error}")
        self.info = info
        self._engine = self._loop.run_until_complete(LocalEngine.load(info, config))
        self.load_s = time.perf_counter() - started

    def supports(self, endpoint: str) -> bool:
        """Both endpoints."""
        return endpoint in ENDPOINTS

    # The bench reads a few private attributes of the engine (its llama.cpp model) to learn the
    # vocabulary; the measured path only uses the public generate().
    def eog_tokens(self) -> tuple[int, ...]:
        """The model's end-of-generation token ids."""
        return tuple(sorted(self._engine.vocab.eog_tokens))

    def count_tokens(self, text: str) -> int:
        """Prompt tokens of a text completion of `text` (BOS included)."""
        return len(self._engine.vocab.tokenize(text, add_special=True, parse_special=True))

    def chat_stops(self) -> tuple[str, ...]:
        """The stop sequences the engine's chat format adds to every chat request."""
        request = GenerationRequest(
            model=self._engine.model_id, params=SamplingParams(), messages=(ChatMessage("user", "Hi"),)
        )
        return self._loop.run_until_complete(self._engine.prepare(request)).stop

    def tokens_containing(self, characters: str) -> tuple[int, ...]:
        """Every vocabulary token whose text contains one of `characters` (used to rule out stop sequences)."""
        if not characters:
            return ()
        model = self._engine.vocab
        wanted = [c.encode() for c in characters]
        return tuple(t for t in range(model.n_vocab) if any(c in model.token_bytes(t) for c in wanted))

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Run `specs` on the in-process engine."""
        return [self._loop.run_until_complete(self._run(spec)) for spec in specs]

    async def _run(self, spec: RunSpec) -> Sample:
        chat = spec.endpoint == CHAT
        request = GenerationRequest(
            model=self._engine.model_id,
            params=engine_params(spec),
            messages=(ChatMessage("user", spec.text),) if chat else None,
            prompt=None if chat else spec.text,
        )
        cpu_start = time.process_time()
        clock = StreamClock()
        prompt_tokens = completion_tokens = 0
        finish = ""
        async with aclosing(self._engine.generate(request)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    clock.content()
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                    if chunk.usage is not None:
                        prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        cpu = time.process_time() - cpu_start
        return clock.sample(self.name, spec, prompt_tokens, completion_tokens, finish_reason=finish, cpu_s=cpu)

    def close(self) -> None:
        """Unload the model and close the loop."""
        self._loop.run_until_complete(self._engine.close())
        self._loop.close()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc (10 ms resolution)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PausableProcess:
    """A child process that is SIGSTOPped while other backends run, so that it cannot take their CPU."""

    def __init__(self, process: subprocess.Popen[Any]) -> None:
        self.process = process
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP the child."""
        if not self._paused and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT the child and give it a moment to run its overdue timers (such as keep-alive expiry)."""
        if self._paused:
            self.process.send_signal(signal.SIGCONT)
            self._paused = False
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time the child has used so far."""
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class ServerBackend:
    """`python -m pensieve serve` as a subprocess, streamed with the `openai` SDK; paused between phases."""

    name = HTTP

    def __init__(self, model_path: Path, n_ctx: int, n_threads: int, work_dir: Path) -> None:
        self.model_id = model_path.stem
        self.log_path = work_dir / "server.log"
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        # Drop the caller's PENSIEVE_* settings and run from an empty folder (no .env): flags decide everything.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PENSIEVE_")}
        env.update(
            PENSIEVE_LOG_DIR=str(work_dir / "logs"), PENSIEVE_DATA_DIR=str(work_dir / "data"), PYTHONUNBUFFERED="1"
        )
        command = [
            sys.executable, "-m", "pensieve", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--models-dir", str(model_path.parent), "--model", self.model_id,
            "--n-ctx", str(n_ctx), "--n-threads", str(n_threads),
        ]  # fmt: skip
        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self._child = PausableProcess(
                subprocess.Popen(
                    command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.close()
            raise
        self.startup_s = time.perf_counter() - started
        self._child.pause()

    def supports(self, endpoint: str) -> bool:
        """Both endpoints."""
        return endpoint in ENDPOINTS

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        problem = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self._child.process.poll() is not None:
                    status = self._child.process.returncode
                    raise RuntimeError(f"the server exited with status {status}:\n{self.log_tail()}")
                try:
                    response = http.get(f"{self.base_url}/ready")
                except httpx.HTTPError as exc:
                    problem = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    problem = f"/ready answered {response.status_code}: {response.text}"
                time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {READY_TIMEOUT_S:.0f} s ({problem}):\n{self.log_tail()}")

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Resume the server, stream `specs` through a fresh SDK client, pause the server again."""
        self._child.resume()
        try:
            # A fresh client per phase: no keep-alive connection that the server may have expired meanwhile.
            with openai.OpenAI(
                base_url=f"{self.base_url}/v1",
                api_key="bench",
                max_retries=0,
                timeout=120.0,
                http_client=openai.DefaultHttpxClient(trust_env=False),
            ) as client:
                return [self._run(client, spec) for spec in specs]
        finally:
            self._child.pause()

    def _run(self, client: openai.OpenAI, spec: RunSpec) -> Sample:
        common: dict[str, Any] = {
            "model": self.model_id,
            "temperature": 0.0,
            "top_p": spec.sampling.top_p,
            "logit_bias": {str(token): BAN_BIAS for token in spec.ban},
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_body": {
                "top_k": spec.sampling.top_k,
                "min_p": spec.sampling.min_p,
                "repeat_penalty": spec.sampling.repeat_penalty,
            },
        }
        cpu_server, cpu_client = self._child.cpu_seconds(), time.process_time()
        clock = StreamClock()
        finish = ""
        usage: Any = None
        if spec.endpoint == CHAT:
            chat_stream = client.chat.completions.create(
                messages=[{"role": "user", "content": spec.text}], max_completion_tokens=spec.max_tokens, **common
            )
            for chat_chunk in chat_stream:
                if chat_chunk.choices:
                    if chat_chunk.choices[0].delta.content:
                        clock.content()
                    finish = chat_chunk.choices[0].finish_reason or finish
                usage = chat_chunk.usage or usage
        else:
            stream = client.completions.create(prompt=spec.text, max_tokens=spec.max_tokens, **common)
            for chunk in stream:
                if chunk.choices:
                    if chunk.choices[0].text:
                        clock.content()
                    finish = chunk.choices[0].finish_reason or finish
                usage = chunk.usage or usage
        cpu_client = time.process_time() - cpu_client
        cpu_server = self._child.cpu_seconds() - cpu_server
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return clock.sample(
            self.name,
            spec,
            prompt_tokens,
            completion_tokens,
            finish_reason=finish,
            cpu_s=cpu_server,
            client_cpu_s=cpu_client,
        )

    def close(self) -> None:
        """Stop the server."""
        self._child.stop()


def native_ban_llama(ban: Sequence[int]) -> type[Any]:
    """A `Llama` subclass whose greedy sampler chain starts with llama.cpp's own logit-bias sampler.

    `Llama(logit_bias=...)` applies a bias through a Python callback that views the whole vocabulary
    (262k logits for Gemma 3) as numpy arrays for every token; this keeps the chain native instead.
    For temperature 0 the library builds penalties -> greedy; this builds logit bias -> penalties ->
    greedy with the library's own sampler wrapper, and leaves every other case to the library.
    """
    from llama_cpp import Llama
    from llama_cpp._internals import LlamaSampler

    biases = {token: float(BAN_BIAS) for token in ban}

    class NativeBanLlama(Llama):
        def _init_sampler(self, **kwargs: Any) -> Any:  # type: ignore[override]
            if not biases or kwargs.get("temp") != 0.0 or kwargs.get("logits_processor") or kwargs.get("grammar"):
                return super()._init_sampler(**kwargs)
            sampler: Any = LlamaSampler()  # type: ignore[no-untyped-call]
            sampler.add_logit_bias(self._n_vocab, biases)
            sampler.add_penalties(
                n_vocab=self._n_vocab,
                penalty_last_n=self.last_n_tokens_size,
                penalty_repeat=kwargs.get("repeat_penalty", 1.0),
                penalty_freq=kwargs.get("frequency_penalty", 0.0),
                penalty_present=kwargs.get("presence_penalty", 0.0),
            )
            sampler.add_greedy()
            return sampler

    return NativeBanLlama


class LlamaBaseline:
    """llama-cpp-python's high-level `Llama` in this process, as a reference (text completions only).

    The end-of-generation ban goes through `create_completion(logit_bias=...)` (the public API, a
    per-token Python callback), or with `native_bias` through llama.cpp's own logit-bias sampler.
    """

    name = BASELINE

    def __init__(self, model_path: Path, config: LlamaConfig, ban: Sequence[int], *, native_bias: bool) -> None:
        from llama_cpp import Llama

        self._logit_bias = None if native_bias else {token: float(BAN_BIAS) for token in ban}
        llama_class = native_ban_llama(ban) if native_bias else Llama
        started = time.perf_counter()
        self._llm = llama_class(
            model_path=str(model_path),
            n_ctx=config.n_ctx,
            n_batch=config.n_batch,
            n_ubatch=config.n_batch,
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads_batch,
            swa_full=True,
            verbose=False,
        )
        self.load_s = time.perf_counter() - started

    def supports(self, endpoint: str) -> bool:
        """Text completions only."""
        return endpoint == COMPLETIONS

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Run `specs` with `create_completion(stream=True)`."""
        return [self._run(spec) for spec in specs]

    def _run(self, spec: RunSpec) -> Sample:
        prompt_tokens = len(self._llm.tokenize(spec.text.encode("utf-8"), add_bos=True, special=True))
        cpu_start = time.process_time()
        clock = StreamClock()
        finish = ""
        stream = cast(
            Iterator[Any],
            self._llm.create_completion(
                spec.text,
                max_tokens=spec.max_tokens,
                temperature=0.0,
                top_k=spec.sampling.top_k,
                top_p=spec.sampling.top_p,
                min_p=spec.sampling.min_p,
                repeat_penalty=spec.sampling.repeat_penalty,
                logit_bias=self._logit_bias,
                stream=True,
            ),
        )
        for chunk in stream:
            choice = chunk["choices"][0]
            if choice["text"]:
                clock.content()
            finish = choice["finish_reason"] or finish
        cpu = time.process_time() - cpu_start
        # `Llama` streams no usage; "length" means exactly max_tokens, otherwise count the chunks.
        completion_tokens = spec.max_tokens if finish == "length" else clock.chunks
        return clock.sample(self.name, spec, prompt_tokens, completion_tokens, finish_reason=finish, cpu_s=cpu)

    def close(self) -> None:
        """Free the model."""
        self._llm.close()


class BaselineWorker:
    """LlamaBaseline in a worker subprocess (JSON lines over pipes), paused between phases.

    It cannot share this process with the engine: libgomp (llama.cpp's OpenMP) gives every thread that
    starts a parallel region its own team of workers, and once a process holds more OpenMP threads than
    cores it stops spinning at barriers, which costs a loaded engine about a quarter of its decode speed.
    """

    name = BASELINE

    def __init__(self, model_path: Path, config: LlamaConfig, ban: Sequence[int], *, native_bias: bool) -> None:
        setup = {"model": str(model_path), "config": asdict(config), "ban": list(ban), "native_bias": native_bias}
        command = [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG, json.dumps(setup)]
        self._child = PausableProcess(
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        )
        try:
            self.load_s = float(self._receive()["load_s"])
        except BaseException:
            self._child.stop()
            raise
        self._child.pause()

    def supports(self, endpoint: str) -> bool:
        """Text completions only."""
        return endpoint == COMPLETIONS

    def _receive(self) -> dict[str, Any]:
        assert self._child.process.stdout is not None
        line = self._child.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the baseline worker exited with status {self._child.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Resume the worker, run `specs` in it, pause it again."""
        assert self._child.process.stdin is not None
        self._child.resume()
        try:
            samples = []
            for spec in specs:
                self._child.process.stdin.write(json.dumps(asdict(spec)) + "\n")
                self._child.process.stdin.flush()
                samples.append(Sample(**self._receive()))
            return samples
        finally:
            self._child.pause()

    def close(self) -> None:
        """Stop the worker."""
        self._child.stop()


def baseline_worker(setup_json: str) -> int:
    """Body of the baseline worker process: load `Llama`, then answer one JSON line per run request."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything llama.cpp prints goes to stderr, not into the protocol
    setup = json.loads(setup_json)
    baseline = LlamaBaseline(
        Path(setup["model"]), LlamaConfig(**setup["config"]), setup["ban"], native_bias=setup["native_bias"]
    )
    print(json.dumps({"load_s": baseline.load_s}), file=protocol, flush=True)
    for line in sys.stdin:
        raw = json.loads(line)
        spec = RunSpec(**{**raw, "ban": tuple(raw["ban"]), "sampling": Sampling(**raw["sampling"])})
        print(json.dumps(asdict(baseline.run_phase([spec])[0])), file=protocol, flush=True)
    baseline.close()
    return 0


# --- the benchmark ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything a run of the benchmark needs to know."""

    model: Path
    rounds: int
    max_tokens: int
    prompt_tokens: int
    endpoints: tuple[str, ...]
    config: LlamaConfig
    sampling: Sampling
    with_baseline: bool
    baseline_native_bias: bool
    target: float
    ban_eog: tuple[int, ...] | None
    facts: dict[str, Any] = field(default_factory=dict)


def build_passage(engine: EngineBackend, target_tokens: int) -> str:
    """Sentences of PASSAGE (repeated if needed) until the text is about `target_tokens` tokens long."""
    sentences: list[str] = []
    index = 0
    while engine.count_tokens(" ".join(sentences)) < target_tokens:
        sentences.append(PASSAGE[index % len(PASSAGE)])
        index += 1
    return " ".join(sentences)


def run_text(passage: str, run: int) -> str:
    """The prompt of run number `run` (0 = warm-up): a distinct first word, then the fixed passage."""
    lead = LEADS[run % len(LEADS)] if run else "Prelude"
    return f"{lead} {run}. {passage}"


def machine_facts(plan: Plan) -> dict[str, Any]:
    """Facts about the machine and software that a reader needs to interpret the figures."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": available_cores(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": metadata.version("llama_cpp_python"),
        "openai": metadata.version("openai"),
        "uvicorn": metadata.version("uvicorn"),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "httptools": importlib.util.find_spec("httptools") is not None,
        "pensieve": pensieve_version,
        "git_commit": commit,
        "model_file": plan.model.name,
        "model_bytes": plan.model.stat().st_size,
        "load_average_start": list(os.getloadavg()),
    }


def log(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_benchmark(plan: Plan) -> dict[str, Any]:
    """Load every backend, warm it up, run the interleaved rounds and return the raw results."""
    work_dir = Path(tempfile.mkdtemp(prefix="pensieve-bench-"))
    backends: list[Backend] = []
    server: ServerBackend | None = None
    keep_work_dir = False
    try:
        log(f"loading the engine in-process ({plan.model.name}, {plan.config.n_threads} threads)")
        engine = EngineBackend(plan.model, plan.config)
        backends.append(engine)
        eog = plan.ban_eog if plan.ban_eog is not None else engine.eog_tokens()
        stops = engine.chat_stops()
        # A chat format's stop sequence ends a run early; banning the tokens that can start one rules that out.
        stop_starts = "".join(sorted({stop[0] for stop in stops if stop}))
        chat_extra = tuple(t for t in engine.tokens_containing(stop_starts) if t not in eog)
        ban = {COMPLETIONS: tuple(eog), CHAT: tuple(eog) + chat_extra}
        passage = build_passage(engine, plan.prompt_tokens)
        log(f"starting the server (work dir {work_dir})")
        server = ServerBackend(plan.model, plan.config.n_ctx, plan.config.n_threads, work_dir)
        backends.append(server)
        baseline: BaselineWorker | None = None
        if plan.with_baseline:
            log("loading llama-cpp-python's Llama in a worker process")
            baseline = BaselineWorker(plan.model, plan.config, ban[COMPLETIONS], native_bias=plan.baseline_native_bias)
            backends.append(baseline)

        def specs(backend: Backend, run: int, round_index: int, max_tokens: int) -> list[RunSpec]:
            text = run_text(passage, run)
            return [
                RunSpec(endpoint, text, max_tokens, ban[endpoint], plan.sampling, round_index)
                for endpoint in plan.endpoints
                if backend.supports(endpoint)
            ]

        samples: list[Sample] = []
        log("warming up")
        for backend in backends:
            backend.run_phase(specs(backend, 0, -1, min(WARMUP_TOKENS, plan.max_tokens)))
        started = time.perf_counter()
        for round_index in range(plan.rounds):
            shift = round_index % len(backends)
            order = [*backends[shift:], *backends[:shift]]
            for backend in order:
                samples += backend.run_phase(specs(backend, round_index + 1, round_index, plan.max_tokens))
            done = [s for s in samples if s.round == round_index]
            log(
                f"round {round_index + 1}/{plan.rounds}: "
                + ", ".join(f"{s.backend}/{s.endpoint} {s.decode_tps:.1f} tok/s" for s in done)
            )
        plan.facts.update(
            engine_load_s=engine.load_s,
            server_startup_s=server.startup_s,
            baseline_load_s=baseline.load_s if baseline else None,
            measure_s=time.perf_counter() - started,
            load_average_end=list(os.getloadavg()),
            eog_tokens=list(eog),
            chat_stop_sequences=list(stops),
            chat_extra_banned=len(chat_extra),
        )
        return {"samples": samples}
    except BaseException:
        keep_work_dir = True
        if server is not None:
            log(f"server output (kept in {work_dir}):\n{server.log_tail()}")
        raise
    finally:
        for backend in reversed(backends):
            with contextlib.suppress(Exception):
                backend.close()
        if not keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for the table; '-' for missing values."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with aligned columns."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def report(plan: Plan, samples: Sequence[Sample]) -> tuple[str, list[Summary], list[Comparison]]:
    """The printed report, and the summaries and comparisons it shows."""
    facts = plan.facts
    backends = [ENGINE, HTTP, *([BASELINE] if plan.with_baseline else [])]
    summaries = [s for b in backends for e in plan.endpoints if (s := summarise(samples, b, e)) is not None]
    comparisons = [c for e in plan.endpoints if (c := compare(samples, e, plan.target)) is not None]
    model_mb = facts["model_bytes"] / 1e6
    lines = [
        "## Pensieve: HTTP streaming vs raw engine (single stream)",
        "",
        f"- Machine: {facts['usable_cores']} usable cores of {facts['cpu_count']} ({facts['cpu_model']}), "
        f"{facts['platform']}",
        f"- Load average: {' '.join(f'{x:.2f}' for x in facts['load_average_start'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in facts['load_average_end'])} at end",
        f"- Python {facts['python']}, llama-cpp-python {facts['llama_cpp_python']}, openai {facts['openai']}, "
        f"uvicorn {facts['uvicorn']} (uvloop {'yes' if facts['uvloop'] else 'no'}, "
        f"httptools {'yes' if facts['httptools'] else 'no'}), pensieve {facts['pensieve']} @ {facts['git_commit']}",
        f"- Model: {facts['model_file']}, {model_mb:.1f} MB; n_ctx {plan.config.n_ctx}, n_batch {plan.config.n_batch}, "
        f"n_threads {plan.config.n_threads} (every backend)",
        f"- Runs: {plan.rounds} interleaved rounds, {plan.max_tokens} generated tokens per run, greedy "
        f"(top_k {plan.sampling.top_k}, repeat_penalty {plan.sampling.repeat_penalty}); banned: EOG "
        f"{facts['eog_tokens']}, plus {facts['chat_extra_banned']} tokens that could start a chat stop sequence "
        f"{facts['chat_stop_sequences']} on chat",
        f"- Start-up: engine load {facts['engine_load_s']:.2f} s, server ready {facts['server_startup_s']:.2f} s"
        + (f", Llama load {facts['baseline_load_s']:.2f} s" if facts.get("baseline_load_s") else "")
        + f"; measuring took {facts['measure_s']:.0f} s",
        *(
            [
                "- llama-cpp row: Llama.create_completion(stream=True) in a worker process; EOG ban through "
                + (
                    "llama.cpp's logit-bias sampler (--baseline-native-bias)"
                    if plan.baseline_native_bias
                    else "create_completion(logit_bias=...)"
                )
            ]
            if plan.with_baseline
            else []
        ),
        "",
    ]
    rows = [
        [
            s.backend,
            s.endpoint,
            str(s.runs),
            str(s.prompt_tokens),
            str(s.completion_tokens_min),
            fmt(s.tps_median),
            f"{fmt(s.tps_min)}-{fmt(s.tps_max)}",
            fmt(s.ttft_p50_ms),
            fmt(s.ttft_p95_ms),
            fmt(s.cpu_cores, 2),
            fmt(s.other_cores, 2),
            fmt(s.client_cpu_ms_per_token, 2),
        ]
        for s in summaries
    ]
    header = [
        "backend", "endpoint", "runs", "prompt tok", "gen tok (min)", "decode tok/s (median)", "min-max",
        "TTFT p50 ms", "TTFT p95 ms", "CPU cores", "other load cores", "client CPU ms/tok",
    ]  # fmt: skip
    lines += [table(header, rows), ""]
    ratio_rows = [
        [
            c.endpoint,
            str(c.pairs),
            f"{100 * c.tps_ratio:.1f}%",
            f"{100 * c.tps_ratio_of_medians:.1f}%",
            f"{fmt(c.overhead_ms_per_token, 2)}",
            f"{c.ttft_ratio:.2f}x",
            f"{c.ttft_delta_ms:+.1f}",
            f"{'PASS' if c.passed else 'FAIL'} (>= {100 * c.target:.0f}%)",
        ]
        for c in comparisons
    ]
    ratio_header = [
        "endpoint", "pairs", "HTTP/engine tok/s", "ratio of medians", "+ms/token", "HTTP/engine TTFT",
        "TTFT +ms", "verdict",
    ]  # fmt: skip
    lines += ["HTTP vs engine (median of per-round ratios):", "", table(ratio_header, ratio_rows), ""]
    if plan.with_baseline:
        base = compare(samples, COMPLETIONS, plan.target, base=BASELINE, other=ENGINE)
        if base is not None:
            lines.append(
                f"Engine vs llama-cpp-python Llama (completions): engine decode at {100 * base.tps_ratio:.1f}% of "
                f"Llama's tok/s, TTFT {base.ttft_ratio:.2f}x ({base.ttft_delta_ms:+.1f} ms)."
            )
    measured = [s for s in samples if s.round >= 0]
    noisy = [s for s in measured if s.other_cores > NOISY_CORES]
    if noisy:
        lines.append(
            f"WARNING: {len(noisy)} of {len(measured)} runs shared the machine with other work using more than "
            f"{NOISY_CORES} cores (column 'other load cores'); on a {plan.facts['usable_cores']}-core machine their "
            "figures say more about that work than about Pensieve. Rerun when the machine is quiet."
        )
    short = [run for run in samples if run.round >= 0 and run.completion_tokens != plan.max_tokens]
    for run in short:
        lines.append(
            f"WARNING: {run.backend}/{run.endpoint} round {run.round + 1} generated {run.completion_tokens} tokens, "
            f"not {plan.max_tokens} (finish_reason {run.finish_reason!r}); its tok/s is still per token."
        )
    if comparisons:
        verdict = "PASS" if all(c.passed for c in comparisons) else "FAIL"
        lines.append(
            f"Overall: {verdict} (HTTP streaming >= {100 * plan.target:.0f}% of the raw engine's decode tok/s)"
        )
    return "\n".join(lines), summaries, comparisons


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    defaults = Settings.from_values()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per run (default: %(default)s)")
    parser.add_argument("--prompt-tokens", type=int, default=200, help="approximate prompt length (default: 200)")
    parser.add_argument(
        "--n-threads", type=int, default=0, help="threads for every backend; 0 = the server's default (all cores)"
    )
    parser.add_argument(
        "--n-ctx", type=int, default=defaults.engine.n_ctx, help="context size (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=defaults.sampling.repeat_penalty,
        help="sent to every backend (default: the server's default, %(default)s; 1.0 = plain greedy)",
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINTS), help="comma list of completions,chat (default: %(default)s)"
    )
    parser.add_argument(
        "--ban-eog", default=None, help="comma list of token ids to ban (default: the model's end-of-generation tokens)"
    )
    parser.add_argument("--with-baseline", action="store_true", help="add llama-cpp-python's Llama as a reference row")
    parser.add_argument(
        "--baseline-native-bias",
        action="store_true",
        help="ban EOG in the baseline with llama.cpp's logit-bias sampler instead of Llama's logit_bias callback",
    )
    parser.add_argument("--target", type=float, default=0.90, help="HTTP/engine tok/s ratio to pass (default: 0.90)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the target is missed")
    args = parser.parse_args(argv)
    endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    if not endpoints or any(e not in ENDPOINTS for e in endpoints):
        parser.error(f"--endpoints takes a comma list of {', '.join(ENDPOINTS)}")
    args.endpoints = endpoints
    if args.rounds < 1 or args.max_tokens < 2:
        parser.error("--rounds must be >= 1 and --max-tokens >= 2")
    if not args.model.is_file():
        parser.error(f"no model file at {args.model} (run: pensieve models install-default)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [WORKER_FLAG]:
        return baseline_worker(argv[1])
    args = parse_args(argv)
    defaults = Settings.from_values()
    n_threads = args.n_threads or available_cores()
    plan = Plan(
        model=args.model.resolve(),
        rounds=args.rounds,
        max_tokens=args.max_tokens,
        prompt_tokens=args.prompt_tokens,
        endpoints=args.endpoints,
        config=LlamaConfig(
            n_ctx=args.n_ctx, n_batch=defaults.engine.n_batch, n_threads=n_threads, n_threads_batch=n_threads
        ),
        sampling=Sampling(
            top_k=defaults.sampling.top_k,
            top_p=defaults.sampling.top_p,
            min_p=defaults.sampling.min_p,
            repeat_penalty=args.repeat_penalty,
        ),
        with_baseline=args.with_baseline,
        baseline_native_bias=args.baseline_native_bias,
        target=args.target,
        ban_eog=tuple(int(t) for t in args.ban_eog.split(",") if t.strip()) if args.ban_eog else None,
    )
    plan.facts = machine_facts(plan)
    samples: list[Sample] = run_benchmark(plan)["samples"]
    text, summaries, comparisons = report(plan, samples)
    print(text, flush=True)
    if args.json is not None:
        raw = {
            "facts": plan.facts,
            "config": {
                "rounds": plan.rounds,
                "max_tokens": plan.max_tokens,
                "prompt_tokens_target": plan.prompt_tokens,
                "endpoints": list(plan.endpoints),
                "llama": asdict(plan.config),
                "sampling": asdict(plan.sampling),
                "target": plan.target,
            },
            "samples": [{**asdict(s), "decode_tps": s.decode_tps} for s in samples],
            "summaries": [asdict(s) for s in summaries],
            "comparisons": [asdict(c) for c in comparisons],
        }
        args.json.write_text(json.dumps(raw, indent=2, allow_nan=True) + "\n")
        log(f"raw numbers written to {args.json}")
    failed = any(not c.passed for c in comparisons)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
