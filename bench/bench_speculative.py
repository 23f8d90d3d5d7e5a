"""Speculative decoding by prompt lookup: single-stream decode speed with it on, off, and llama-server's.

One Pensieve server and one `llama-server` (plain decoding) run on the same model, threads and parallel
sequences. For each workload, every round runs three rows, in an order that rotates every round:
Pensieve with speculation (the default), Pensieve with `speculative: false` on the request, llama-server.
Each run is one streamed greedy completion (temperature 0, repeat_penalty 1.0, end-of-generation banned
so every run has exactly max_tokens tokens) on /v1/completions; the figure is decode tokens/s after the
first token, and the table shows medians over rounds and the ratios. Workloads:

* rewrite: a ~300-token passage to be rewritten with one small change (input-grounded);
* extract: fields of a ~250-token document as JSON (input-grounded);
* essay: open-ended writing (speculation must cost nothing here).

The acceptance rate comes from /api/ps (drafted and accepted tokens over the workload's runs).

    .venv/bin/python bench/bench_speculative.py [--rounds 3] [--model models/x.gguf]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench_vs_llama_server import EOG_BIAS, GREEDY, Stream, Target, pair_arguments, start_pair
from common import table

PASSAGE = (
    "The river town of Aldermere sits where two valleys meet, and for most of its history it has lived by the "
    "water. Every spring the snowmelt swells the river, and the townspeople move their boats to higher "
    "moorings before the flood arrives. The old stone bridge, built three centuries ago by a guild of masons "
    "from the coast, has survived eleven floods and one earthquake. Merchants cross it each morning carrying "
    "wool, cheese and timber to the market square, where the clock tower strikes the hours and children chase "
    "pigeons between the stalls. In the autumn the square fills with apples from the orchards on the eastern "
    "slopes, and the cider makers set up their presses under the arcades. The town council meets on the first "
    "Monday of every month in the hall beside the bridge, and its minutes, kept since 1702, record every "
    "quarrel about tolls, fishing rights and the height of the river wall. Visitors who climb the tower on a "
    "clear day can see the glacier at the head of the northern valley, the source of the river and of the "
    "town's fortune."
)
DOCUMENT = (
    "INVOICE No. 2024-0871\nIssued: 14 March 2024\nDue: 13 April 2024\n\nFrom: Harwick & Lane Joinery Ltd, "
    "Unit 4, Millbrook Trading Estate, Southampton SO15 0LD, VAT GB 284 5521 07\nTo: Mrs Eleanor Whitcombe, "
    "17 Orchard Rise, Winchester SO22 5QT\n\nDescription of work: supply and fitting of three oak sash windows "
    "to the front elevation, including removal of the old frames, draught-proofing, and two coats of clear "
    "exterior varnish. Materials: seasoned European oak, double glazed units 4-16-4 with argon fill, brass "
    "sash fasteners.\n\nLabour: 26 hours at GBP 42.00 = GBP 1,092.00\nMaterials: GBP 1,846.50\nSubtotal: GBP "
    "2,938.50\nVAT at 20%: GBP 587.70\nTotal due: GBP 3,526.20\n\nPayment by bank transfer to Harwick & Lane "
    "Joinery Ltd, sort code 40-12-77, account 61844302, quoting the invoice number. Queries to accounts@"
    "harwicklane.co.uk or 023 8077 4410."
)
# The 270M base model does not follow an instruction by itself: the answer is started for it (its first
# sentence, with the change), as a chat template or a larger model would make it start.
REWRITE_START = "The river town of Elderbrook sits where two valleys meet, and for most of its history it has lived"
WORKLOADS = {
    "rewrite": (
        "Rewrite the passage below with one change: the town is called Elderbrook instead of Aldermere. Keep every "
        f"other word the same.\n\nPassage:\n{PASSAGE}\n\nRewritten passage:\n{REWRITE_START}",
        200,
    ),
    "extract": (
        f"Document:\n{DOCUMENT}\n\nExtract these fields from the document as JSON: invoice_number, issue_date, "
        "due_date, supplier_name, supplier_address, customer_name, customer_address, total_due, sort_code, "
        'account_number.\n\nJSON:\n{"invoice_number": "',
        120,
    ),
    "essay": ("Write a long, imaginative essay about the history of lighthouses and the keepers.\n\n", 160),
}
ROWS = ("pensieve spec on", "pensieve spec off", "llama-server")


def complete(target: Target, row: str, prompt: str, max_tokens: int) -> Stream:
    """One greedy completion on `target`, with speculation off when the row says so."""
    body = {"model": target.model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, **GREEDY}
    body |= {"stream_options": {"include_usage": True}, "logit_bias": EOG_BIAS}
    if row == "pensieve spec off":
        body["speculative"] = False
    return target.stream(body)


def speculation(target: Target) -> tuple[int, int]:
    """(drafted, accepted) tokens of the Pensieve worker so far."""
    row = target.client.get("/api/ps").json()["models"][0]["speculative"]
    return row["drafted_tokens"], row["accepted_tokens"]


def main() -> int:
    """Start both servers, run the interleaved rounds per workload, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pair_arguments(parser)
    args = parser.parse_args()
    pensieve, llama = start_pair(args, "spec")
    ours = Target("pensieve", pensieve.base_url, args.model.stem, lambda: [])
    theirs = Target("llama-server", llama.base_url, args.model.stem, lambda: [])
    speeds: dict[tuple[str, str], list[float]] = {}
    acceptance: dict[str, tuple[int, int]] = {}
    try:
        for target in (ours, theirs):  # warm-up: page in the weights, start the threads
            target.complete("Warm-up.", 8)
        for workload, (prompt, max_tokens) in WORKLOADS.items():
            drafted, accepted = speculation(ours)
            for round_index in range(args.rounds):
                shift = round_index % len(ROWS)
                for row in ROWS[shift:] + ROWS[:shift]:
                    stream = complete(theirs if row == "llama-server" else ours, row, prompt, max_tokens)
                    speeds.setdefault((workload, row), []).append(stream.decode_tps)
                    print(f"{workload} round {round_index + 1} {row}: {stream.decode_tps:.1f} tok/s", file=sys.stderr)
            after = speculation(ours)
            acceptance[workload] = (after[0] - drafted, after[1] - accepted)
    finally:
        ours.client.close()
        theirs.client.close()
        llama.close()
        pensieve.stop()
    print(f"## Speculative decoding ({args.model.name}, {args.threads} threads, medians of {args.rounds} rounds)\n")
    print(report(speeds, acceptance))
    return 0


def report(speeds: dict[tuple[str, str], list[float]], acceptance: dict[str, tuple[int, int]]) -> str:
    """Per workload: median tok/s of each row, the ratios, and the drafts accepted."""
    rows = []
    for workload in WORKLOADS:
        on, off, llama = (statistics.median(speeds[(workload, row)]) for row in ROWS)
        drafted, accepted = acceptance[workload]
        rate = f"{accepted}/{drafted} ({accepted / drafted:.0%})" if drafted else "no drafts"
        rows.append([workload, f"{on:.1f}", f"{off:.1f}", f"{llama:.1f}", f"{on / off:.2f}", f"{on / llama:.2f}", rate])
    header = ["workload", "spec on tok/s", "spec off tok/s", "llama-server tok/s", "on/off", "on/llama", "accepted"]
    return table(header, rows)


if __name__ == "__main__":
    sys.exit(main())
