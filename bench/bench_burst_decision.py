"""Routing-decision overhead of the route planner for a ~2,000-token prompt, printed as a table.

Target (issue "Burst controller"): under 1 ms p50 for a 2,000-token prompt. The route planner is built
in-process exactly as the server builds it (real default model for token counting, every privacy
detector on, complexity scoring, a configured cloud provider — which is never called: deciding does
no network I/O). Rows:

- `decision (prompt tokenized before)`: what routing adds to a request. The token count is cached by
  the local engine and reused by the generation that follows, so it is not routing's own cost.
- `decision incl. tokenization`: a prompt never seen before (each run differs), tokenization included.
- the parts: privacy scan, complexity score, policy function alone.

Usage: .venv/bin/python bench/bench_burst_decision.py [--runs 300] [--model models/gemma-3-270m-q4_k_m.gguf]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import DEFAULT_MODEL, percentile
from pensieve.burst.complexity import score_complexity
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.options import BurstOptions
from pensieve.burst.planner import RoutePlanner, request_texts
from pensieve.burst.policy import decide
from pensieve.cloud.registry import CloudRegistry
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelRegistry
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams

PARAGRAPH = (
    "The quarterly report covers revenue, costs and the outlook for the next period. Our team reviewed "
    "the supplier contracts, renegotiated two of them and documented the changes in the shared folder. "
    "Please summarise the main risks, list the open questions and propose next steps for the board. "
)
CODE = "def total(items):\n    return sum(item.price * item.quantity for item in items)\n\n"


def long_prompt(target_tokens: int) -> str:
    """About `target_tokens` tokens of business prose with a little code."""
    parts: list[str] = []
    while sum(len(part) for part in parts) < target_tokens * 5.0:
        parts.append(PARAGRAPH)
        if len(parts) % 6 == 0:
            parts.append(CODE)
    return "".join(parts)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    return percentile(samples, 0.5) * 1000, percentile(samples, 0.95) * 1000


async def timed(runs: int, action: Callable[[int], Awaitable[object]]) -> list[float]:
    """Wall time of `runs` calls of `action(i)`."""
    samples = []
    for index in range(runs):
        started = time.perf_counter()
        await action(index)
        samples.append(time.perf_counter() - started)
    return samples


async def main() -> int:
    """Build the route planner, time its parts, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    args = parser.parse_args()
    if not args.model.is_file():
        print(f"model not found: {args.model} (run ./run_app.sh or `pensieve models install-default`)", file=sys.stderr)
        return 1
    data_dir = Path(tempfile.mkdtemp(prefix="pensieve-bench-"))
    settings = Settings.from_values(
        models_dir=args.model.parent,
        data_dir=data_dir,
        default_model=args.model.stem,
        n_ctx=4096,
        cloud_base_url="http://127.0.0.1:9/v1",
        cloud_model="bench-model",
        cloud_api_key="sk-bench",
        cloud_price_input=0.15,
        cloud_price_output=0.6,
    )
    pool = ModelPool(settings.engine, ModelRegistry(settings.engine.models_dir))
    cloud = CloudRegistry.from_settings(settings.cloud)
    ledger = SpendLedger(data_dir / "spend.sqlite3")
    options = BurstOptions.from_settings(settings)
    planner = RoutePlanner(options, pool, cloud, ledger)
    engine = await pool.get(settings.engine.default_model)

    text = long_prompt(args.prompt_tokens)
    params = SamplingParams(max_tokens=256)

    def request(suffix: str = "") -> GenerationRequest:
        return GenerationRequest(model="auto", params=params, messages=(ChatMessage("user", text + suffix),))

    fixed = request()
    tokens = await engine.count_prompt_tokens(fixed)
    plan = await planner.plan(fixed, stream=False, header=None)
    texts = request_texts(fixed)

    async def decision_cached(_: int) -> object:
        return await planner.plan(fixed, stream=False, header=None)

    async def decision_fresh(index: int) -> object:
        return await planner.plan(request(f" Run {index}."), stream=False, header=None)

    async def privacy(_: int) -> object:
        return options.scanner.scan(texts)

    async def complexity(_: int) -> object:
        return score_complexity(texts[0], options.weights, prompt_tokens=tokens)

    async def policy(_: int) -> object:
        return decide(options.policy, plan.facts, plan.signals)

    rows = [
        ("decision (prompt tokenized before)", await timed(args.runs, decision_cached)),
        ("decision incl. tokenization", await timed(max(20, args.runs // 5), decision_fresh)),
        ("  privacy scan (all detectors)", await timed(args.runs, privacy)),
        ("  complexity score", await timed(args.runs, complexity)),
        ("  policy function", await timed(args.runs, policy)),
    ]
    print("## Burst controller: routing-decision overhead\n")
    print(f"- prompt: {tokens} tokens ({len(text)} characters), model {args.model.name}, every detector on")
    print(f"- decision: route={plan.decision.route}, reason={plan.decision.reason}\n")
    print("| step | runs | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for name, samples in rows:
        p50, p95 = percentiles(samples)
        print(f"| {name} | {len(samples)} | {p50:.3f} | {p95:.3f} |")
    p50 = percentiles(rows[0][1])[0]
    print(f"\nTarget: decision overhead < 1 ms p50 -> {'PASS' if p50 < 1.0 else 'FAIL'} ({p50:.3f} ms)")
    await pool.close()
    ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
