"""The llama.cpp self-test, run as a child process: load a model and generate with several threads.

    python -m pensieve.engine.llamacpp.selftest --model models/gemma-3-270m-q4_k_m.gguf [--threads N]

It goes through the worker's own code path (BatchContext + Scheduler: a batched prompt, then two
sequences decoded together), so a build that passes runs the same kernels the server will. A build
compiled for instructions this CPU will not execute dies here by SIGILL instead of in the server; the
parent (`pensieve.diagnostics.self_test`) reads the exit status. On success the last stdout line is
one JSON object: the tokens made, the time taken and llama.cpp's system-info line (its CPU features).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pensieve.diagnostics.self_test import default_threads

# Long enough that the prompt is evaluated as a batched matrix product (where AMX and AVX-512 kernels run).
PROMPT = (
    "The following is a short report on the water cycle. Water evaporates from oceans, lakes and rivers, "
    "rises as vapour, cools and condenses into clouds, and falls back as rain or snow. Part of it flows "
    "over the land into rivers, part soaks into the ground and feeds springs and wells, and plants return "
    "some of it to the air. Summarise the report in one sentence:"
)


def run(model: Path, threads: int, tokens: int) -> dict[str, object]:
    """Load `model`, generate `tokens` greedy tokens on two sequences at once; what happened, as a dict."""
    import llama_cpp as llama

    from pensieve.engine.llamacpp.batch_context import BatchContext
    from pensieve.engine.llamacpp.runtime import LlamaConfig
    from pensieve.engine.scheduler import Scheduler
    from pensieve.engine.worker_protocol import DoneEvent, Job, TokenEvent
    from pensieve.engine_api import SamplingParams

    started = time.perf_counter()
    config = LlamaConfig(n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads, n_parallel=2)
    context = BatchContext(model, config)  # its warm-up already decodes a prompt batch and one step
    loaded = time.perf_counter()
    try:
        scheduler = Scheduler(context)
        prompt = context.vocab.tokenize(PROMPT, add_special=True, parse_special=False)
        greedy = SamplingParams(temperature=0.0, repeat_penalty=1.0)
        for rid in (1, 2):
            scheduler.submit(Job(rid, prompt, greedy, max_tokens=tokens, cache_prompt=False))
        produced, finished, errors = 0, 0, []
        while finished < 2:
            for event in scheduler.step():
                if isinstance(event, TokenEvent):
                    produced += 1
                elif isinstance(event, DoneEvent):
                    finished += 1
                    if event.error:
                        errors.append(event.error)
        system_info = llama.llama_print_system_info().decode("utf-8", errors="replace").strip()
    finally:
        context.close()
    return {
        "ok": not errors and produced > 0,
        "error": "; ".join(errors) or (None if produced else "no token was generated"),
        "prompt_tokens": len(prompt),
        "completion_tokens": produced,
        "threads": threads,
        "load_seconds": round(loaded - started, 3),
        "generate_seconds": round(time.perf_counter() - loaded, 3),
        "system_info": system_info,
        "llama_cpp_python": getattr(llama, "__version__", None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 and a JSON line when the build works; 1 and a JSON line with the error when not."""
    parser = argparse.ArgumentParser(description="Load a model and generate a few tokens (llama.cpp self-test).")
    parser.add_argument("--model", type=Path, required=True, help="a .gguf model file")
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads (default: cores)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens to generate per sequence")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # llama.cpp's load-time warnings are noise here
    try:
        result = run(args.model, max(1, args.threads), max(1, args.tokens))
    except Exception as exc:  # a load failure is a result too: the parent shows it
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
