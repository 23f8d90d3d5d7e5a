"""Pensieve against llama.cpp's own `llama-server`, side by side on one machine: the ratios every claim uses.

Both servers run at once on the same model, threads and parallel sequences, each idle while the other is
measured; one load generator (httpx, SSE parsed the same way for both) sends greedy completions to the
OpenAI `/v1/completions` endpoint of each, interleaved (the order alternates every round):

* single stream: decode tokens/s of a 128-token completion;
* 16 concurrent 96-token streams: aggregate tokens/s over the wall time;
* time to first token of a fresh ~200-token prompt, prompt cache off (`cache_prompt: false` on both).

End-of-generation tokens are banned so every run is exactly max_tokens long; sampling is plain greedy on
both (temperature 0, repeat_penalty 1.0), or with `--sampled` Pensieve's default sampling (temperature 0.7,
top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.1) sent to both. Also reported: CPU seconds each
server's processes spend per generated token. llama-server is built once from the pinned
llama-cpp-python's vendored llama.cpp (`bench/llama_server.py`).

    .venv/bin/python bench/bench_vs_llama_server.py [--rounds 3] [--json out.json]

With `--baseline-src DIR` a second Pensieve, run from another checkout (`git worktree add /tmp/main main`),
takes part in the same rounds and gets a table of its own: an A/B of a change against main, each measured
against the same llama-server in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from common import DEFAULT_MODEL, ServerHandle, children, fmt, process_cpu_seconds, start_server, table
from llama_server import LlamaServer

# Gemma's end-of-generation tokens, banned so every run is exactly max_tokens long.
EOG_BIAS = {"1": -100, "106": -100, "212": -100}
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0, "top_k": 40, "top_p": 1.0, "min_p": 0.0}
# `--sampled`: Pensieve's default sampling (SamplingSettings), sent to both: what a chat client gets.
SAMPLED = {"temperature": 0.7, "repeat_penalty": 1.1, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
SUBJECTS = (
    "lighthouses", "volcanoes", "honeybees", "glaciers", "railways", "coral reefs", "windmills", "comets",
    "libraries", "deserts", "submarines", "orchards", "bridges", "owls", "tea gardens", "telescopes",
)  # fmt: skip
FILLER = (
    "The committee reviewed the annual report, discussed the budget for the coming year, compared the "
    "suppliers' offers and agreed on a schedule for the renovation of the north wing. "
)


def prompt_of(tag: str, words: int) -> str:
    """A prompt of about `words` words whose first words are unique (no prefix shared with any other)."""
    body = (FILLER * (1 + words // 25)).split()[:words]
    return f"{tag}: notes for a short essay. " + " ".join(body) + f"\n\nAn essay about {tag}:\n"


@dataclass(frozen=True)
class Stream:
    """One streamed completion, timed by the load generator."""

    start: float
    first: float
    last: float
    tokens: int

    @property
    def ttft(self) -> float:
        """Seconds to the first text."""
        return self.first - self.start

    @property
    def decode_tps(self) -> float:
        """Tokens/s after the first one."""
        return (self.tokens - 1) / (self.last - self.first) if self.last > self.first else 0.0


@dataclass
class Target:
    """One server under test: where it listens and which processes are its."""

    name: str
    base_url: str
    model: str
    pids: Callable[[], list[int]]
    sampling: dict[str, float] = field(default_factory=lambda: dict(GREEDY))
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        # No keep-alive: a server closing an idle connection just as the next request reuses it would fail
        # that request; a fresh loopback connection costs both servers the same fraction of a millisecond.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        self.client = httpx.Client(base_url=self.base_url, timeout=600, limits=limits)

    def cpu_seconds(self) -> float:
        """CPU time of the server's processes so far."""
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def complete(self, prompt: str, max_tokens: int, *, cache_prompt: bool = True) -> Stream:
        """One streamed completion (greedy unless `sampling` says otherwise); its timestamps and the tokens
        the server counted."""
        body = {
            "model": self.model, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": EOG_BIAS, "cache_prompt": cache_prompt,
            **self.sampling,
        }  # fmt: skip
        return self.stream(body)

    def stream(self, body: dict[str, object]) -> Stream:
        """One streamed completion of `body` on /v1/completions, timed."""
        started = time.perf_counter()
        first = last = 0.0
        tokens = 0
        with self.client.stream("POST", "/v1/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    last = time.perf_counter()
                    first = first or last
                    tokens += 1
                usage = chunk.get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
        return Stream(started, first, last, tokens)


def concurrent(target: Target, prompts: Sequence[str], max_tokens: int) -> float:
    """All prompts at once: aggregate generated tokens/s over the wall time."""
    streams: list[Stream] = []
    lock = threading.Lock()

    def one(prompt: str) -> None:
        stream = target.complete(prompt, max_tokens)
        with lock:
            streams.append(stream)

    threads = [threading.Thread(target=one, args=(prompt,)) for prompt in prompts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(stream.tokens for stream in streams) / (time.perf_counter() - started)


@dataclass
class Figures:
    """Per round and server: the three measures and CPU seconds per generated token."""

    single_tps: list[float] = field(default_factory=list)
    aggregate_tps: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    cpu_per_token_ms: list[float] = field(default_factory=list)


def measure_round(target: Target, round_index: int, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """(single-stream tok/s, aggregate tok/s, median TTFT s, CPU ms per token) of one round on one server."""
    tag = f"{target.name} {round_index}"
    cpu_before = target.cpu_seconds()
    singles = [target.complete(prompt_of(f"{tag} single {i}", 40), args.single_tokens) for i in range(2)]
    prompts = [prompt_of(f"{subject} {tag}", 40) for subject in SUBJECTS[: args.streams]]
    aggregate = concurrent(target, prompts, args.concurrent_tokens)
    ttfts = [
        target.complete(prompt_of(f"{tag} fresh {i}", 150), 4, cache_prompt=False).ttft for i in range(args.ttft_runs)
    ]
    generated = 2 * args.single_tokens + args.streams * args.concurrent_tokens + 4 * args.ttft_runs
    cpu_ms = (target.cpu_seconds() - cpu_before) * 1000 / generated
    return statistics.median(s.decode_tps for s in singles), aggregate, statistics.median(ttfts), cpu_ms


def report(figures: dict[str, Figures], args: argparse.Namespace, server: str = "pensieve") -> str:
    """The table: per-round ratios of `server` / llama-server, their median, raw medians and the targets."""
    ours, theirs = figures[server], figures["llama-server"]
    label = "Pensieve" if server == "pensieve" else server
    rows = []
    measures = (
        ("single stream tok/s", "single_tps", ">= 1.0", True),
        (f"{args.streams} streams aggregate tok/s", "aggregate_tps", ">= 1.0", True),
        ("TTFT ~200-token prompt, s", "ttft", "<= 1.0", False),
        ("CPU ms per generated token", "cpu_per_token_ms", "-", False),
    )
    for name, key, target, higher in measures:
        mine, base = getattr(ours, key), getattr(theirs, key)
        ratios = [a / b if b else float("nan") for a, b in zip(mine, base, strict=True)]
        middle = statistics.median(ratios)
        verdict = "-" if target == "-" else ("PASS" if (middle >= 1.0 if higher else middle <= 1.0) else "FAIL")
        rows.append(
            [
                name,
                *(f"{r:.2f}" for r in ratios),
                f"**{middle:.2f}**",
                f"{statistics.median(mine):.{3 if key == 'ttft' else 1}f}",
                f"{statistics.median(base):.{3 if key == 'ttft' else 1}f}",
                target,
                verdict,
            ]
        )
    header = [
        f"ratio {label} / llama-server",
        *(f"round {i + 1}" for i in range(args.rounds)),
        "median",
        label,
        "llama-server",
        "target",
        "verdict",
    ]
    return table(header, rows)


def pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every side-by-side bench: the model, rounds, and what both servers run with."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per sequence")


def pair_env(args: argparse.Namespace) -> dict[str, str]:
    """The PENSIEVE_* settings that match a Pensieve server to llama-server's (`pair_arguments`)."""
    return {
        "PENSIEVE_N_CTX": str(args.n_ctx), "PENSIEVE_N_THREADS": str(args.threads),
        "PENSIEVE_PARALLEL": str(args.parallel), "PENSIEVE_LOG_LEVEL": "warning",
    }  # fmt: skip


def own_processes(server: ServerHandle) -> Callable[[], list[int]]:
    """The process ids of a Pensieve server: the server and its model workers."""
    pid = server.process.pid
    return lambda: [pid, *children(pid)]


def start_pair(
    args: argparse.Namespace, name: str, extra_env: dict[str, str] | None = None
) -> tuple[ServerHandle, LlamaServer]:
    """Pensieve (with `extra_env` PENSIEVE_* settings) and llama-server on the same model, threads, parallel
    sequences and context per sequence (`pair_arguments`), both ready; their logs in a new temporary folder."""
    work = Path(tempfile.mkdtemp(prefix=f"pensieve-bench-{name}-"))
    pensieve = start_server(name, args.model, work, {**pair_env(args), **(extra_env or {})})
    try:
        llama = LlamaServer(
            args.model,
            n_ctx=args.n_ctx,
            threads=args.threads,
            parallel=args.parallel,
            log_path=work / "llama-server.log",
        )
    except BaseException:
        pensieve.stop()
        raise
    return pensieve, llama


def main() -> int:
    """Start both servers, run the interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pair_arguments(parser)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--single-tokens", type=int, default=128)
    parser.add_argument("--concurrent-tokens", type=int, default=96)
    parser.add_argument("--ttft-runs", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="extra PENSIEVE_X=value for the Pensieve server")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run a Pensieve from this checkout (e.g. a `git worktree` of main), in the same rounds: an A/B",
    )
    parser.add_argument("--sampled", action="store_true", help="Pensieve's default sampling instead of greedy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    pensieve, llama = start_pair(args, "vs-llama", env)
    servers = [pensieve]
    targets = [
        Target("pensieve", pensieve.base_url, args.model.stem, own_processes(pensieve)),
        Target("llama-server", llama.base_url, args.model.stem, lambda: [llama.process.pid]),
    ]
    try:
        if args.baseline_src is not None:
            source = args.baseline_src.resolve() / "src"
            if not (source / "pensieve").is_dir():
                raise SystemExit(f"{args.baseline_src} is not a Pensieve checkout (no src/pensieve)")
            work = Path(tempfile.mkdtemp(prefix="pensieve-bench-baseline-"))
            baseline = start_server("baseline", args.model, work, {**pair_env(args), **env, "PYTHONPATH": str(source)})
            servers.append(baseline)
            targets.append(Target("baseline", baseline.base_url, args.model.stem, own_processes(baseline)))
    except BaseException:
        llama.close()
        pensieve.stop()
        raise
    for target in targets:
        target.sampling = dict(SAMPLED if args.sampled else GREEDY)
    figures = {target.name: Figures() for target in targets}
    try:
        for target in targets:  # warm-up: page in the weights, start the threads
            target.complete("Warm-up.", 8)
        for round_index in range(args.rounds):
            # The order rotates: with two servers it alternates, and each server takes each place in turn.
            shift = round_index % len(targets)
            for target in targets[shift:] + targets[:shift]:
                single, aggregate, ttft, cpu_ms = measure_round(target, round_index, args)
                got = figures[target.name]
                got.single_tps.append(single)
                got.aggregate_tps.append(aggregate)
                got.ttft.append(ttft)
                got.cpu_per_token_ms.append(cpu_ms)
                print(
                    f"round {round_index + 1} {target.name}: {fmt(single)} tok/s single, {fmt(aggregate)} tok/s "
                    f"at {args.streams}, TTFT {fmt(ttft, 3)} s, {fmt(cpu_ms, 2)} CPU ms/token",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for target in targets:
            target.client.close()
        llama.close()
        for server in servers:
            server.stop()
    print(f"## Pensieve vs llama-server ({args.model.name}, {args.threads} threads, {args.parallel} sequences)\n")
    print(report(figures, args))
    if args.baseline_src is not None:
        print(f"\n### The baseline ({args.baseline_src}), measured in the same rounds\n")
        print(report(figures, args, "baseline"))
    if args.json:
        args.json.write_text(json.dumps({name: asdict(value) for name, value in figures.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
