"""llama-cpp-python's high-level `Llama` as a reference row, run in a worker subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from common import REPO_ROOT
from http_vs_engine.backends import PausableProcess
from http_vs_engine.spec import BAN_BIAS, BASELINE, COMPLETIONS, WORKER_FLAG, RunSpec, Sample, Sampling, StreamClock
from pensieve.engine.llamacpp.runtime import LlamaConfig

# The command line that runs the baseline worker (it re-enters the bench with WORKER_FLAG).
ENTRY_SCRIPT = REPO_ROOT / "bench" / "bench_http_vs_engine.py"


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
        command = [sys.executable, str(ENTRY_SCRIPT), WORKER_FLAG, json.dumps(setup)]
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
