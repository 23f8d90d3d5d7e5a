"""Running the bench: the plan, the machine facts, the interleaved rounds."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from common import REPO_ROOT
from http_vs_engine.backends import Backend, EngineBackend, ServerBackend
from http_vs_engine.baseline import BaselineWorker
from http_vs_engine.spec import CHAT, COMPLETIONS, LEADS, PASSAGE, WARMUP_TOKENS, RunSpec, Sample, Sampling
from pensieve import __version__ as pensieve_version
from pensieve.diagnostics.cpu_features import available_cores
from pensieve.engine.llamacpp.runtime import LlamaConfig

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
