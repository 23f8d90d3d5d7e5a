"""The printed report: tables of every backend and endpoint, and the HTTP/engine comparison."""

from __future__ import annotations

from collections.abc import Sequence

from common import fmt, table
from http_vs_engine.run import Plan
from http_vs_engine.spec import (
    BASELINE,
    COMPLETIONS,
    ENGINE,
    HTTP,
    NOISY_CORES,
    Comparison,
    Sample,
    Summary,
    compare,
    summarise,
)

# --- report ---------------------------------------------------------------------------------------


def report(plan: Plan, samples: Sequence[Sample]) -> tuple[str, list[Summary], list[Comparison]]:
    """The printed report, and the summaries and comparisons it shows."""
    facts = plan.facts
    backends = [ENGINE, HTTP, *([BASELINE] if plan.with_baseline else [])]
    summaries = [s for b in backends for e in plan.endpoints if (s := summarise(samples, b, e)) is not None]
    comparisons = [c for e in plan.endpoints if (c := compare(samples, e, plan.target)) is not None]
    model_mb = facts["model_bytes"] / 1e6
    lines = [
        "## Pensieve: HTTP streaming vs raw engine (single stream)",
        "",
        f"- Machine: {facts['usable_cores']} usable cores of {facts['cpu_count']} ({facts['cpu_model']}), "
        f"{facts['platform']}",
        f"- Load average: {' '.join(f'{x:.2f}' for x in facts['load_average_start'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in facts['load_average_end'])} at end",
        f"- Python {facts['python']}, llama-cpp-python {facts['llama_cpp_python']}, openai {facts['openai']}, "
        f"uvicorn {facts['uvicorn']} (uvloop {'yes' if facts['uvloop'] else 'no'}, "
        f"httptools {'yes' if facts['httptools'] else 'no'}), pensieve {facts['pensieve']} @ {facts['git_commit']}",
        f"- Model: {facts['model_file']}, {model_mb:.1f} MB; n_ctx {plan.config.n_ctx}, n_batch {plan.config.n_batch}, "
        f"n_threads {plan.config.n_threads} (every backend)",
        f"- Runs: {plan.rounds} interleaved rounds, {plan.max_tokens} generated tokens per run, greedy "
        f"(top_k {plan.sampling.top_k}, repeat_penalty {plan.sampling.repeat_penalty}); banned: EOG "
        f"{facts['eog_tokens']}, plus {facts['chat_extra_banned']} tokens that could start a chat stop sequence "
        f"{facts['chat_stop_sequences']} on chat",
        f"- Start-up: engine load {facts['engine_load_s']:.2f} s, server ready {facts['server_startup_s']:.2f} s"
        + (f", Llama load {facts['baseline_load_s']:.2f} s" if facts.get("baseline_load_s") else "")
        + f"; measuring took {facts['measure_s']:.0f} s",
        *(
            [
                "- llama-cpp row: Llama.create_completion(stream=True) in a worker process; EOG ban through "
                + (
                    "llama.cpp's logit-bias sampler (--baseline-native-bias)"
                    if plan.baseline_native_bias
                    else "create_completion(logit_bias=...)"
                )
            ]
            if plan.with_baseline
            else []
        ),
        "",
    ]
    rows = [
        [
            s.backend,
            s.endpoint,
            str(s.runs),
            str(s.prompt_tokens),
            str(s.completion_tokens_min),
            fmt(s.tps_median),
            f"{fmt(s.tps_min)}-{fmt(s.tps_max)}",
            fmt(s.ttft_p50_ms),
            fmt(s.ttft_p95_ms),
            fmt(s.cpu_cores, 2),
            fmt(s.other_cores, 2),
            fmt(s.client_cpu_ms_per_token, 2),
        ]
        for s in summaries
    ]
    header = [
        "backend", "endpoint", "runs", "prompt tok", "gen tok (min)", "decode tok/s (median)", "min-max",
        "TTFT p50 ms", "TTFT p95 ms", "CPU cores", "other load cores", "client CPU ms/tok",
    ]  # fmt: skip
    lines += [table(header, rows), ""]
    ratio_rows = [
        [
            c.endpoint,
            str(c.pairs),
            f"{100 * c.tps_ratio:.1f}%",
            f"{100 * c.tps_ratio_of_medians:.1f}%",
            f"{fmt(c.overhead_ms_per_token, 2)}",
            f"{c.ttft_ratio:.2f}x",
            f"{c.ttft_delta_ms:+.1f}",
            f"{'PASS' if c.passed else 'FAIL'} (>= {100 * c.target:.0f}%)",
        ]
        for c in comparisons
    ]
    ratio_header = [
        "endpoint", "pairs", "HTTP/engine tok/s", "ratio of medians", "+ms/token", "HTTP/engine TTFT",
        "TTFT +ms", "verdict",
    ]  # fmt: skip
    lines += ["HTTP vs engine (median of per-round ratios):", "", table(ratio_header, ratio_rows), ""]
    if plan.with_baseline:
        base = compare(samples, COMPLETIONS, plan.target, base=BASELINE, other=ENGINE)
        if base is not None:
            lines.append(
                f"Engine vs llama-cpp-python Llama (completions): engine decode at {100 * base.tps_ratio:.1f}% of "
                f"Llama's tok/s, TTFT {base.ttft_ratio:.2f}x ({base.ttft_delta_ms:+.1f} ms)."
            )
    measured = [s for s in samples if s.round >= 0]
    noisy = [s for s in measured if s.other_cores > NOISY_CORES]
    if noisy:
        lines.append(
            f"WARNING: {len(noisy)} of {len(measured)} runs shared the machine with other work using more than "
            f"{NOISY_CORES} cores (column 'other load cores'); on a {plan.facts['usable_cores']}-core machine their "
            "figures say more about that work than about Pensieve. Rerun when the machine is quiet."
        )
    short = [run for run in samples if run.round >= 0 and run.completion_tokens != plan.max_tokens]
    for run in short:
        lines.append(
            f"WARNING: {run.backend}/{run.endpoint} round {run.round + 1} generated {run.completion_tokens} tokens, "
            f"not {plan.max_tokens} (finish_reason {run.finish_reason!r}); its tok/s is still per token."
        )
    if comparisons:
        verdict = "PASS" if all(c.passed for c in comparisons) else "FAIL"
        lines.append(
            f"Overall: {verdict} (HTTP streaming >= {100 * plan.target:.0f}% of the raw engine's decode tok/s)"
        )
    return "\n".join(lines), summaries, comparisons
