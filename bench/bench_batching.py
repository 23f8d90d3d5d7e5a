"""Continuous batching through HTTP against llama-cpp-python's high-level `Llama` serving one request at a time.

Measured side by side in one run, on the real default model, greedy, end-of-generation banned so every
run produces exactly --max-tokens tokens:

* single stream: decode tokens/s and time to first token (TTFT) of a cold ~200-token prompt,
  interleaved rounds of Pensieve (HTTP, official `openai` SDK, streamed) and the baseline;
* aggregate tokens/s at 1, 4, 8 and 16 concurrent streams through HTTP (distinct prompts), against
  the baseline serving the same 16 requests one after another;
* a follow-up chat turn sharing a ~1,500-token prefix: TTFT cold vs with the prompt cache;
* memory: RSS of the server (+ its model worker) before the model is loaded, loaded, after unload.

The baseline runs in its own process (two llama.cpp users in one process slow each other down through
OpenMP); it is idle, blocked on its pipe, while Pensieve is measured, and the other way round.

    .venv/bin/python bench/bench_batching.py [--rounds 3] [--max-tokens 96] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import openai

from bench_vs_llama_server import Stream as Run  # one streamed run's timestamps, TTFT and decode tok/s
from common import DEFAULT_MODEL, children, percentile, rss_bytes, start_server

# Gemma's end-of-generation tokens: banned so every run is exactly max_tokens long.
EOG_BIAS = {"1": -100, "106": -100, "212": -100}
SUBJECTS = (
    "lighthouses", "volcanoes", "honeybees", "glaciers", "railways", "coral reefs", "windmills", "comets",
    "libraries", "deserts", "submarines", "orchards", "bridges", "owls", "tea gardens", "telescopes",
)  # fmt: skip
FILLER = (
    "The committee reviewed the annual report, discussed the budget for the coming year, compared the "
    "suppliers' offers and agreed on a schedule for the renovation of the north wing. "
)
CONCURRENCY = (1, 4, 8, 16)
# The baseline's create_completion defaults (repeat_penalty 1.0): both sides then decode plain greedy.
SAME_SAMPLING = {"repeat_penalty": 1.0, "top_k": 40}


def prompt_of(subject: str, words: int) -> str:
    """A distinct prompt (its first words differ, so no prefix is shared) of about `words` words."""
    head = f"{subject.capitalize()}: notes for a short essay. "
    body = (FILLER * (1 + words // 25)).split()[:words]
    return head + " ".join(body) + f"\n\nAn essay about {subject}:\n"


# --- the baseline worker ----------------------------------------------------------------------------


def baseline_worker(model: str, n_ctx: int, threads: int) -> None:
    """Serve JSON-line requests with `Llama.create_completion(stream=True)`, one at a time."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, swa_full=True, verbose=False)
    bias = {int(token): float(value) for token, value in EOG_BIAS.items()}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        first = last = None
        chunks = 0
        for chunk in llm.create_completion(
            request["prompt"], max_tokens=request["max_tokens"], temperature=0.0, logit_bias=bias, stream=True
        ):
            if chunk["choices"][0]["text"]:  # type: ignore[index]
                last = time.perf_counter()
                first = first or last
                chunks += 1
        print(json.dumps({"start": started, "first": first, "last": last, "chunks": chunks}), flush=True)


class Baseline:
    """The baseline worker process."""

    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        command = [sys.executable, __file__, "--baseline-worker", str(model), str(n_ctx), str(threads)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._receive()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the baseline worker died")
        data: dict[str, Any] = json.loads(line)
        return data

    def run(self, prompt: str, max_tokens: int) -> Run:
        """One streamed completion."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"prompt": prompt, "max_tokens": max_tokens}) + "\n")
        self.process.stdin.flush()
        got = self._receive()
        return Run(got["start"], got["first"], got["last"], max_tokens)

    def close(self) -> None:
        """Stop the worker."""
        self.process.kill()
        self.process.wait()


# --- Pensieve ----------------------------------------------------------------------------------------


class Server:
    """`python -m pensieve serve` with the model not preloaded (so RSS before load can be measured)."""

    def __init__(self, model: Path, n_ctx: int, threads: int, parallel: int, work: Path) -> None:
        env = {
            "PENSIEVE_N_CTX": str(n_ctx), "PENSIEVE_N_THREADS": str(threads), "PENSIEVE_PARALLEL": str(parallel),
            "PENSIEVE_PRELOAD_DEFAULT_MODEL": "false", "PENSIEVE_LOG_LEVEL": "warning",
        }  # fmt: skip
        self.handle = start_server("batching", model, work, env, ready_path="/health", ready_timeout=60)
        self.model_id = model.stem
        self.base = self.handle.base_url
        self.process = self.handle.process
        self.client = openai.OpenAI(base_url=f"{self.base}/v1", api_key="bench", max_retries=0, timeout=300)

    def rss(self) -> int:
        """RSS of the server and its worker processes."""
        return rss_bytes(self.process.pid) + sum(rss_bytes(child) for child in children(self.process.pid))

    def load(self) -> None:
        """Load the model now."""
        httpx.post(f"{self.base}/api/models/{self.model_id}/load", timeout=120).raise_for_status()

    def unload(self) -> None:
        """Unload it (its worker process exits)."""
        httpx.post(f"{self.base}/api/models/{self.model_id}/unload", timeout=120).raise_for_status()

    def complete(self, prompt: str, max_tokens: int) -> Run:
        """One streamed text completion."""
        started = time.perf_counter()
        first = last = 0.0
        tokens = 0
        stream = self.client.completions.create(
            model=self.model_id,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=0,
            logit_bias=EOG_BIAS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_body=SAME_SAMPLING,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                last = time.perf_counter()
                first = first or last
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return Run(started, first, last, tokens)

    def chat_ttft(self, messages: list[dict[str, str]]) -> float:
        """Seconds to the first text of a streamed chat answer (8 tokens)."""
        started = time.perf_counter()
        stream = self.client.chat.completions.create(
            model=self.model_id,
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
        ttft = 0.0
        for chunk in stream:
            if not ttft and chunk.choices and chunk.choices[0].delta.content:
                ttft = time.perf_counter() - started
        return ttft

    def close(self) -> None:
        """Stop the server."""
        self.client.close()
        self.handle.stop()


# --- the measurements ----------------------------------------------------------------------------------


def concurrent(server: Server, prompts: Sequence[str], max_tokens: int) -> tuple[float, list[Run]]:
    """Run all prompts at once; (aggregate tokens/s over the wall time, the runs)."""
    runs: list[Run] = []
    lock = threading.Lock()

    def one(prompt: str) -> None:
        run = server.complete(prompt, max_tokens)
        with lock:
            runs.append(run)

    threads = [threading.Thread(target=one, args=(prompt,)) for prompt in prompts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return sum(run.tokens for run in runs) / wall, runs


def prefix_turns(server: Server, index: int) -> tuple[float, float]:
    """(cold TTFT, follow-up TTFT) for a conversation with a ~1,500-token system prompt."""
    system = f"Session {index}. " + (FILLER * 48)  # ~1,500 tokens
    first = [{"role": "system", "content": system}, {"role": "user", "content": "Summarise the report."}]
    cold = server.chat_ttft(first)
    follow = [*first, {"role": "assistant", "content": "The committee reviewed the report."}]
    follow.append({"role": "user", "content": "And the schedule?"})
    return cold, server.chat_ttft(follow)


def main() -> int:
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.model.is_file():
        print(f"model not found: {args.model}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="pensieve-bench-batching-"))
    server = Server(args.model, args.n_ctx, args.threads, args.parallel, work)
    baseline = Baseline(args.model, args.n_ctx, args.threads)
    try:
        time.sleep(1.0)
        rss_before = server.rss()
        server.load()
        time.sleep(0.5)
        rss_loaded = server.rss()
        server.complete("Warm-up.", 4)
        baseline.run("Warm-up.", 4)
        single_p: list[Run] = []
        single_b: list[Run] = []
        for round_index in range(args.rounds):
            for subject_index in range(2):
                prompt = prompt_of(SUBJECTS[(round_index * 2 + subject_index) % len(SUBJECTS)] + f" {round_index}", 150)
                if (round_index + subject_index) % 2:
                    single_b.append(baseline.run(prompt, args.max_tokens))
                    single_p.append(server.complete(prompt + " ", args.max_tokens))
                else:
                    single_p.append(server.complete(prompt + " ", args.max_tokens))
                    single_b.append(baseline.run(prompt, args.max_tokens))
        aggregate: dict[int, float] = {}
        for level in CONCURRENCY:
            prompts = [prompt_of(f"{subject} ({level})", 40) for subject in SUBJECTS[:level]]
            aggregate[level], _ = concurrent(server, prompts, args.max_tokens)
        serial_started = time.perf_counter()
        serial_runs = [baseline.run(prompt_of(f"{s} (serial)", 40), args.max_tokens) for s in SUBJECTS]
        baseline_serial = sum(run.tokens for run in serial_runs) / (time.perf_counter() - serial_started)
        prefix = [prefix_turns(server, index) for index in range(args.rounds)]
        server.unload()
        time.sleep(1.0)
        rss_after = server.rss()
    finally:
        baseline.close()
        server.close()

    def med(runs: list[Run], attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in runs)

    tps_p, tps_b = med(single_p, "decode_tps"), med(single_b, "decode_tps")
    ttft_p = [run.ttft for run in single_p]
    ttft_b = [run.ttft for run in single_b]
    cold = statistics.median(c for c, _ in prefix)
    warm = statistics.median(w for _, w in prefix)
    print("## Continuous batching vs llama-cpp-python `Llama` (one request at a time)\n")
    print(f"- model {args.model.name}, n_ctx {args.n_ctx}, {args.threads} threads, parallel {args.parallel}, ")
    print(
        f"  {args.max_tokens} tokens per run, greedy (repeat_penalty 1.0 on both), EOG banned; {args.rounds} rounds\n"
    )
    print("| measure | Pensieve (HTTP) | baseline | ratio | target | verdict |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("single-stream decode tok/s", tps_p, tps_b, tps_p / tps_b, ">= 1.0x", tps_p / tps_b >= 1.0),
        (
            "TTFT cold ~200-token prompt, p50 s",
            statistics.median(ttft_p),
            statistics.median(ttft_b),
            statistics.median(ttft_p) / statistics.median(ttft_b),
            "<= 1.3x",
            statistics.median(ttft_p) / statistics.median(ttft_b) <= 1.3,
        ),
        (
            "aggregate tok/s @16 streams (baseline: serial)",
            aggregate[16],
            baseline_serial,
            aggregate[16] / baseline_serial,
            ">= 2.5x",
            aggregate[16] / baseline_serial >= 2.5,
        ),
    ]
    for name, ours, theirs, ratio, target, ok in rows:
        print(f"| {name} | {ours:.3f} | {theirs:.3f} | {ratio:.2f}x | {target} | {'PASS' if ok else 'FAIL'} |")
    print(f"\nTTFT p95: Pensieve {percentile(ttft_p, 0.95):.3f} s, baseline {percentile(ttft_b, 0.95):.3f} s\n")
    print("| concurrent streams | aggregate tok/s (HTTP) | vs baseline serial |")
    print("|---|---|---|")
    for level in CONCURRENCY:
        print(f"| {level} | {aggregate[level]:.1f} | {aggregate[level] / baseline_serial:.2f}x |")
    speedup = cold / warm if warm else 0.0
    print("\n| follow-up turn, ~1,500-token shared prefix | TTFT s |")
    print("|---|---|")
    print(f"| cold (first turn) | {cold:.3f} |")
    print(f"| follow-up (prompt cache) | {warm:.3f} |")
    print(f"| ratio | {speedup:.1f}x (target >= 5x: {'PASS' if speedup >= 5 else 'FAIL'}) |")
    delta = (rss_after - rss_before) / 2**20
    print("\n| memory (RSS of server + worker) | MB |")
    print("|---|---|")
    print(f"| before load | {rss_before / 2**20:.0f} |")
    print(f"| loaded | {rss_loaded / 2**20:.0f} |")
    verdict = "PASS" if abs(delta) <= 50 else "FAIL"
    print(f"| after unload | {rss_after / 2**20:.0f} ({delta:+.0f} MB; target within 50: {verdict}) |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "single_pensieve": [asdict(r) for r in single_p],
                    "single_baseline": [asdict(r) for r in single_b],
                    "aggregate": aggregate,
                    "baseline_serial_tps": baseline_serial,
                    "prefix": prefix,
                    "rss": [rss_before, rss_loaded, rss_after],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-worker":
        baseline_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
