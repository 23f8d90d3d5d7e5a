"""Does the set-up's CPU-safe llama.cpp build cost speed? Native (-march=native) vs the chosen build, interleaved.

The set-up (scripts/llama_build.py) compiles llama.cpp with an explicit CPU feature list instead of
pip's default `-march=native`, and leaves AMX out unless a probe proves it runs. This bench measures
what that costs on a machine where both builds run: prompt processing (a 512-token batch, llama-bench's
pp512) and decoding (128 single-token steps, tg128), through the worker's own BatchContext, with the
same threads, alternating the builds round after round so drift on a shared machine hits both.

    .venv/bin/python bench/bench_cpu_build.py [--rounds 5] [--threads 2] [--model PATH]

Each build's wheel comes from the set-up's cache (compiled there on first use: ~5 minutes each on
2 cores) and is unpacked into a folder beside it; each measurement runs in a fresh child process
whose import path holds that build, so the two never share a process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import llama_build  # noqa: E402

from pensieve.diagnostics.cpu_features import BuildCandidate  # noqa: E402

NATIVE = BuildCandidate("native", "native (-march=native)", (), "pip's default build")
PROMPT_TOKENS, DECODE_TOKENS = 512, 128


def measure(model: Path, threads: int) -> dict[str, float]:
    """In the child: pp512 and tg128 tokens/s through BatchContext (the worker's compute path)."""
    from pensieve.engine.llamacpp.batch_context import BatchContext, BatchItem
    from pensieve.engine.llamacpp.runtime import LlamaConfig

    config = LlamaConfig(n_ctx=1024, n_batch=PROMPT_TOKENS, n_threads=threads, n_threads_batch=threads)
    context = BatchContext(model, config)
    token = context.vocab.tokenize(" the", add_special=False, parse_special=False)[0]
    try:
        started = time.perf_counter()
        context.decode([BatchItem(token, pos, 0, pos == PROMPT_TOKENS - 1) for pos in range(PROMPT_TOKENS)])
        prompt_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for pos in range(PROMPT_TOKENS, PROMPT_TOKENS + DECODE_TOKENS):
            context.decode([BatchItem(token, pos, 0, True)])
        decode_seconds = time.perf_counter() - started
    finally:
        context.close()
    return {"pp": PROMPT_TOKENS / prompt_seconds, "tg": DECODE_TOKENS / decode_seconds}


def unpacked(wheel: Path) -> Path:
    """The wheel's files in a folder beside it (a wheel is a zip; its top level is an import root)."""
    target = wheel.parent / "site"
    if not (target / "llama_cpp").is_dir():
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    return target


def build_site(candidate: BuildCandidate, version: str) -> Path:
    """The import root of a build, compiling its wheel into the set-up's cache when missing."""
    wheel = llama_build.cached_wheel(version, candidate)
    if wheel is None:
        print(f"compiling llama-cpp-python {version} ({candidate.name}); about 5 minutes...", file=sys.stderr)
        wheel = llama_build.build_wheel(Path(sys.executable), version, candidate)
    return unpacked(wheel)


def run_child(site: Path, model: Path, threads: int) -> dict[str, float]:
    """One measurement in a fresh process that imports llama_cpp from `site` and pensieve from src/."""
    code = (
        "import json, sys; sys.path[:0] = sys.argv[1:3]; import bench_cpu_build as b; "
        "print(json.dumps(b.measure(__import__('pathlib').Path(sys.argv[3]), int(sys.argv[4]))))"
    )
    argv = [sys.executable, "-c", code, str(site), str(REPO / "src"), str(model), str(threads)]
    result = subprocess.run(argv, cwd=REPO / "bench", capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def chosen_build() -> BuildCandidate:
    """The build the set-up chose and self-tested on this machine (from the .venv stamp)."""
    stamp = json.loads((REPO / ".venv" / "pensieve-setup.json").read_text(encoding="utf-8"))
    record = stamp["llama"]
    return BuildCandidate(record["key"], record["name"], tuple(record["cmake_args"]), "the set-up's choice")


def main(argv: Sequence[str] | None = None) -> int:
    """Interleave the two builds for `--rounds` rounds and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "gemma-3-270m-q4_k_m.gguf")
    args = parser.parse_args(argv)
    version = importlib.metadata.version(llama_build.DISTRIBUTION)  # the pinned one the set-up installed
    builds = [NATIVE, chosen_build()]
    sites = [build_site(build, version) for build in builds]
    samples: dict[str, dict[str, list[float]]] = {b.key: {"pp": [], "tg": []} for b in builds}
    for round_number in range(args.rounds):
        order = list(zip(builds, sites, strict=True))
        if round_number % 2:
            order.reverse()  # alternate which build goes first
        for build, site in order:
            result = run_child(site, args.model, args.threads)
            for metric in ("pp", "tg"):
                samples[build.key][metric].append(result[metric])
            print(
                f"round {round_number + 1} {build.name}: pp512 {result['pp']:.1f} tg128 {result['tg']:.1f}",
                file=sys.stderr,
            )
    print(
        f"\nllama-cpp-python {version}, {args.threads} threads, {args.rounds} interleaved rounds, medians (tokens/s)\n"
    )
    print("| build | cmake args | pp512 | tg128 |")
    print("|---|---|---|---|")
    for build in builds:
        pp, tg = (statistics.median(samples[build.key][m]) for m in ("pp", "tg"))
        print(f"| {build.name} | `{build.cmake_args_text or '(default: GGML_NATIVE=ON)'}` | {pp:.1f} | {tg:.1f} |")
    native, chosen = (samples[b.key] for b in builds)
    ratio = {m: statistics.median(chosen[m]) / statistics.median(native[m]) for m in ("pp", "tg")}
    print(f"| ratio chosen / native | | {ratio['pp']:.3f} | {ratio['tg']:.3f} |")
    per_round = {m: [c / n for c, n in zip(chosen[m], native[m], strict=True)] for m in ("pp", "tg")}
    rounded = {m: [round(r, 3) for r in ratios] for m, ratios in per_round.items()}
    print(f"\nper-round ratios chosen / native: pp512 {rounded['pp']}, tg128 {rounded['tg']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
