"""Routing bench: how well the local model's confidence tells right answers from wrong ones, and the cascade.

Runs a checkable task set (bench/routing/tasks.py: arithmetic, sequences, capitals, antonyms, plurals, day
and month order; 3 levels; 216 items) through a real Pensieve server as text completions with `logprobs`,
then prints local accuracy by kind and level, the AUC of each confidence signal (whole-answer mean and
minimum log-probability, and the minimum and mean over the first k tokens for k = 1, 2, 4, 8: the window
a streamed cascade would hold back), and for cloud shares of 10-50%: the accuracy and PGR of a cascade
escalating the least confident answers, against a random and a perfect router at the same share (the cloud
being an oracle).

With `--live`, it then runs the real cascade against an oracle cloud at each of `--shares` (a server per
share; bench/routing/live.py) and reports the realised share, accuracy, PGR, cost, added latency,
streamed/non-streamed agreement and time to first byte. `--plot` draws accuracy against cloud share.

    .venv/bin/python bench/bench_routing.py [--per 12] [--json out.json] [--plot out.png]
        [--live [--shares 0.3,0.5] [--hold 4]]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common import DEFAULT_MODEL, fmt, start_server, table
from routing.metrics import (
    SIGNALS,
    Scored,
    auc,
    best_signal,
    cascade_accuracy,
    perfect_accuracy,
    pgr,
    random_accuracy,
    signals,
)
from routing.tasks import Item, task_set

SHARES = (0.1, 0.2, 0.3, 0.4, 0.5)
TABLE_SIGNALS = ("mean", "min@2", "text@2")  # the cascade table's columns (with the best signal, if another)
MAX_TOKENS = 8  # room for the largest window (8 tokens); answers are a word or a number


def ask(http: httpx.Client, model: str, item: Item) -> tuple[str, list[float], list[str]]:
    """The greedy reply to `item`, its tokens' log-probabilities and the tokens."""
    body = {"model": model, "prompt": item.prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": 0}
    reply = http.post("/v1/completions", json=body | {"stop": ["\n"]})
    reply.raise_for_status()
    measured = reply.json()["choices"][0]
    logprobs = measured.get("logprobs") or {}
    pairs = [
        (float(value), str(token))
        for value, token in zip(logprobs.get("token_logprobs") or [], logprobs.get("tokens") or [], strict=False)
        if value is not None
    ]
    return measured["text"], [value for value, _ in pairs], [token for _, token in pairs]


def local_pass(items: list[Item], model: Path) -> tuple[list[Scored], float]:
    """Every item through a local-only server: right or wrong and its signals; and the seconds it took."""
    with tempfile.TemporaryDirectory(prefix="pensieve-routing-") as work:
        server = start_server("routing", model, Path(work))
        try:
            started = time.perf_counter()
            with httpx.Client(base_url=server.base_url, timeout=120) as http:
                answers = [ask(http, server.model_id, item) for item in items]
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    pairs = zip(items, answers, strict=True)
    scored = [Scored(item.is_right(text), signals(lps, tokens)) for item, (text, lps, tokens) in pairs]
    return scored, elapsed


def offline_report(items: list[Item], scored: list[Scored], elapsed: float) -> dict[str, Any]:
    """Print the offline tables; return their figures."""
    local = sum(s.right for s in scored) / len(scored)
    print(f"## Routing bench: {len(items)} items, {elapsed:.0f} s; local accuracy {local:.3f}\n")
    rows = []
    for kind in dict.fromkeys(item.kind for item in items):
        levels = []
        for level in (1, 2, 3):
            picked = [s for item, s in zip(items, scored, strict=True) if item.kind == kind and item.level == level]
            levels.append(sum(s.right for s in picked) / len(picked))
        picked = [s for item, s in zip(items, scored, strict=True) if item.kind == kind]
        rows.append([kind, *(fmt(v, 2) for v in levels), fmt(sum(s.right for s in picked) / len(picked), 2)])
    print(table(["kind", "level 1", "level 2", "level 3", "all"], rows) + "\n")
    aucs = {name: auc(scored, name) for name in SIGNALS}
    best, best_auc = best_signal(scored)
    print(table(["signal", "AUC"], [[name, fmt(aucs[name], 3)] for name in SIGNALS]))
    print(f"\nBest signal: {best} (AUC {best_auc:.3f}).\n")
    columns = list(dict.fromkeys([*TABLE_SIGNALS, best]))
    figures: dict[str, Any] = {"items": len(items), "local_accuracy": local, "auc": aucs, "best_signal": best}
    figures["accuracy_by_kind"] = {row[0]: row[1:] for row in rows}
    figures["shares"] = []
    rows = []
    for share in SHARES:
        perfect, rand = perfect_accuracy(scored, share), random_accuracy(scored, share)
        row = {"share": share, "random": rand, "perfect": perfect, "random_pgr": pgr(rand, local)}
        row["perfect_pgr"] = pgr(perfect, local)
        for name in columns:
            row[name] = cascade_accuracy(scored, name, share)
            row[f"{name}_pgr"] = pgr(row[name], local)
        figures["shares"].append(row)
        rows.append(
            [f"{share:.0%}"]
            + [f"{fmt(row[name], 3)} ({fmt(row[f'{name}_pgr'], 2)})" for name in columns]
            + [f"{fmt(rand, 3)} ({fmt(row['random_pgr'], 2)})", f"{fmt(perfect, 3)} ({fmt(row['perfect_pgr'], 2)})"]
        )
    header = ["cloud share", *(f"cascade: {name} (PGR)" for name in columns), "random (PGR)", "perfect (PGR)"]
    print(table(header, rows) + "\n")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per", type=int, default=12, help="items per kind and level (216 in all by default)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--plot", type=Path, help="draw accuracy against cloud share to this PNG")
    parser.add_argument("--live", action="store_true", help="also run the live cascade against an oracle cloud")
    parser.add_argument("--shares", default="0.3", help="live: comma list of target cloud shares (a server each)")
    parser.add_argument("--hold", type=int, help="live: PENSIEVE_BURST_STREAM_HOLD_TOKENS (default: the server's)")
    parser.add_argument("--skip-offline", action="store_true", help="live only: no local pass (and no plot)")
    args = parser.parse_args(argv)
    items = task_set(args.per)
    figures: dict[str, Any] = {}
    scored: list[Scored] = []
    if not args.skip_offline:
        scored, elapsed = local_pass(items, args.model)
        figures = offline_report(items, scored, elapsed)
    live: list[dict[str, Any]] = []
    if args.live:
        from routing.live import report, run_share, summary  # the fake cloud lives in tests/support

        for share in (float(value) for value in args.shares.split(",")):
            if not 0 < share < 1:
                parser.error(f"--shares: {share} is not in (0, 1)")
            live.append(summary(items, run_share(items, share, args.hold, args.model)))
            print(report(live[-1]) + "\n")
        figures["live"] = live
    if args.plot and not scored:
        print("No figure: --plot needs the offline pass (drop --skip-offline).")
    elif args.plot:
        from routing.plot import draw

        draw(args.plot, scored, figures["best_signal"], live)
        print(f"Figure written to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
