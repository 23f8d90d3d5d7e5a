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
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from common import DEFAULT_MODEL
from http_vs_engine.baseline import baseline_worker
from http_vs_engine.report import report
from http_vs_engine.run import Plan, log, machine_facts, run_benchmark
from http_vs_engine.spec import ENDPOINTS, WORKER_FLAG, Sample, Sampling
from pensieve.config import Settings
from pensieve.diagnostics.cpu_features import available_cores
from pensieve.engine.llamacpp.runtime import LlamaConfig


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
    parser.add_argument("--n-ctx", type=int, default=defaults.engine.n_ctx, help="context size (default: %(default)s)")
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
