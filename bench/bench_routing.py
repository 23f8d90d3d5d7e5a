"""Routing bench: how well the local model's confidence tells right answers from wrong ones.

Runs a checkable task set (bench/routing/tasks.py: arithmetic, capitals, sequences, letters; 3 levels;
240 items) through a real Pensieve server as text completions with `logprobs`, then prints local
accuracy by kind and level, the AUC of each confidence signal (mean, minimum and first token
log-probability), and for cloud shares of 10-50%: the accuracy and PGR of a cascade escalating the
least confident answers, against a random and a perfect router at the same share (the cloud being an
oracle). This first version measures the signal offline from one local pass; the live cascade, its
realised share and the streamed variant are issue #16's next steps.

    .venv/bin/python bench/bench_routing.py [--per 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import DEFAULT_MODEL, fmt, start_server, table
from routing.metrics import Scored, auc, cascade_accuracy, perfect_accuracy, pgr, random_accuracy
from routing.tasks import Item, task_set

SIGNALS = ("mean", "min", "first")
SHARES = (0.1, 0.2, 0.3, 0.4, 0.5)


def ask(http: httpx.Client, model: str, item: Item) -> tuple[str, list[float]]:
    """The greedy reply to `item` and its tokens' log-probabilities."""
    body = {"model": model, "prompt": item.prompt, "max_tokens": 6, "temperature": 0, "logprobs": 0, "stop": ["\n"]}
    reply = http.post("/v1/completions", json=body)
    reply.raise_for_status()
    choice = reply.json()["choices"][0]
    logprobs = [float(v) for v in (choice.get("logprobs") or {}).get("token_logprobs") or [] if v is not None]
    return choice["text"], logprobs


def signals(logprobs: list[float]) -> dict[str, float]:
    """The confidence signals of one answer (an empty answer is as unsure as can be)."""
    if not logprobs:
        return {name: -99.0 for name in SIGNALS}
    return {"mean": sum(logprobs) / len(logprobs), "min": min(logprobs), "first": logprobs[0]}


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per", type=int, default=20, help="items per kind and level (240 in all by default)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    items = task_set(args.per)
    with tempfile.TemporaryDirectory(prefix="pensieve-routing-") as work:
        server = start_server("routing", args.model, Path(work))
        try:
            started = time.perf_counter()
            with httpx.Client(base_url=server.base_url, timeout=120) as http:
                answers = [ask(http, server.model_id, item) for item in items]
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    scored = [Scored(item.is_right(text), signals(lps)) for item, (text, lps) in zip(items, answers, strict=True)]
    local = sum(s.right for s in scored) / len(scored)
    print(f"## Routing bench: {len(items)} items, {elapsed:.0f} s; local accuracy {local:.3f}\n")
    rows = []
    for kind in sorted({item.kind for item in items}):
        for level in (1, 2, 3):
            picked = [s for item, s in zip(items, scored, strict=True) if item.kind == kind and item.level == level]
            rows.append([kind, str(level), str(len(picked)), fmt(sum(s.right for s in picked) / len(picked), 2)])
    print(table(["kind", "level", "items", "local accuracy"], rows) + "\n")
    print(table(["signal", "AUC"], [[name, fmt(auc(scored, name), 3)] for name in SIGNALS]) + "\n")
    figures: dict[str, object] = {"items": len(items), "local_accuracy": local, "auc": {}, "shares": []}
    figures["auc"] = {name: auc(scored, name) for name in SIGNALS}
    rows = []
    for share in SHARES:
        perfect, rand = perfect_accuracy(scored, share), random_accuracy(scored, share)
        row = {"share": share, "random": rand, "perfect": perfect, "random_pgr": pgr(rand, local)}
        row["perfect_pgr"] = pgr(perfect, local)
        for name in SIGNALS:
            row[name] = cascade_accuracy(scored, name, share)
            row[f"{name}_pgr"] = pgr(row[name], local)
        figures["shares"].append(row)  # type: ignore[attr-defined]
        rows.append(
            [f"{share:.0%}"]
            + [f"{fmt(row[name], 3)} ({fmt(row[f'{name}_pgr'], 2)})" for name in SIGNALS]
            + [f"{fmt(rand, 3)} ({fmt(row['random_pgr'], 2)})", f"{fmt(perfect, 3)} ({fmt(row['perfect_pgr'], 2)})"]
        )
    header = ["cloud share", *(f"cascade: {name} (PGR)" for name in SIGNALS), "random (PGR)", "perfect (PGR)"]
    print(table(header, rows))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
