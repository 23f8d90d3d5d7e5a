"""Soak test: N clients for M minutes against a real server that bursts to a fake cloud injecting faults.

The fake cloud (tests/support/fake_cloud) answers cloud calls and misbehaves on a schedule (500, 503, 429 with
Retry-After, hangs, dropped and stalled streams, latency); a real `pensieve serve` with the default model bursts
to it under a budget; the clients mix local, cloud-routed and `auto` chats, text completions and embeddings,
streamed and not, and some abandon requests mid-stream or mid-wait. The report: requests served, clear errors
by kind, client disconnects, LOST requests (anything that ended in neither an answer nor a clear error), p50/p99
latency, RSS growth after the warm-up, and the spend recorded against the fake's bills.

Targets (issue #14): nothing lost, RSS growth under 5% after the warm-up (the first 20% of the run), spend equal
to the fake's bills to the token. Exit status 0 when all hold, 1 otherwise.

    .venv/bin/python bench/soak.py                        # 16 clients, 10 minutes
    .venv/bin/python bench/soak.py --clients 16 --minutes 3 --seed 7 --json soak.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import common  # noqa: F401 - puts tests/ on sys.path for the fake cloud and the launcher
from soak_parts.report import as_json, render, verdict
from soak_parts.run import SoakConfig, SoakResult, run_soak

__all__ = ["SoakConfig", "SoakResult", "main", "parse_args", "run_soak"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients run (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix and the fault schedule")
    parser.add_argument("--json", type=Path, help="also write the whole result (every outcome) to this file")
    parser.add_argument("--fault-interval", type=float, default=1.0, help="least seconds between two injected faults")
    parser.add_argument("--model", type=Path, help="GGUF file (default: the default model, as the tests find it)")
    parser.add_argument("--work-dir", type=Path, help="folder for the server's data and log (default: a new temp)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.minutes <= 0:
        parser.error("--clients must be at least 1 and --minutes positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, print the report and the verdict; 0 when every target holds, 1 otherwise."""
    args = parse_args(argv)
    config = SoakConfig(
        clients=args.clients,
        minutes=args.minutes,
        seed=args.seed,
        fault_interval_s=args.fault_interval,
        model=args.model,
        work_dir=args.work_dir,
    )
    print(f"soak: {config.clients} clients for {config.minutes:g} minutes (seed {config.seed})...", flush=True)
    result = run_soak(config)
    print(render(result))
    passed, line = verdict(result)
    if args.json:
        args.json.write_text(json.dumps(as_json(result), indent=1))
    print()
    print(line)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
