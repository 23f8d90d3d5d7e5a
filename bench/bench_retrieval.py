"""File retrieval: index N generated documents (~10 MB of text) and time BM25 retrieval over them.

Drives `FileStore` directly (in-memory database, temporary folder), the code the server runs for
/api/files and for the chat path's `context_for`: upload time per document (detection, extraction,
privacy scan, chunking, indexing, fsync), index size in memory, the SQLite file text size, and the latency
of `context_for` over all documents and over one, for `--queries` questions each aimed at one planted fact.

    .venv/bin/python bench/bench_retrieval.py [--docs 100] [--kb 100] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import time

import common
from common import percentile
from pensieve.files.store import FileStore
from pensieve.persistence.database import Database
from pensieve.privacy.scanner import PrivacyConfig, PrivacyScanner
from pensieve.settings_sections import FilesSettings

WORDS = [
    "river",
    "bridge",
    "market",
    "harbour",
    "orchard",
    "railway",
    "glacier",
    "lantern",
    "meadow",
    "quarry",
    "canal",
    "tower",
    "village",
    "forest",
    "engine",
    "ledger",
    "budget",
    "report",
    "meeting",
    "season",
    "harvest",
    "weather",
    "station",
    "library",
    "garden",
    "archive",
    "council",
    "ferry",
    "island",
    "valley",
    "mountain",
    "coast",
    "plateau",
    "signal",
    "beacon",
    "workshop",
    "factory",
    "school",
    "hospital",
    "museum",
]


def document(rng: random.Random, kb: int, facts: list[tuple[str, str]]) -> bytes:
    """~`kb` KB of word salad in lines, with each (subject, code) fact planted on a random line."""
    lines = [" ".join(rng.choices(WORDS, k=14)) + "." for _ in range(kb * 1024 // 100)]
    for subject, code in facts:
        lines[rng.randrange(len(lines))] = f"The access code of the {subject} is {code}."
    return "\n".join(lines).encode()


def main() -> None:
    """Index the documents, run the queries, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--kb", type=int, default=100, help="size of each document in KB")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--budget", type=int, default=1024, help="token budget of each context_for call")
    args = parser.parse_args()

    rng = random.Random(15)
    store = FileStore(
        Database(None), FilesSettings(max_storage_mb=4096), PrivacyScanner(PrivacyConfig()), common.REPO_ROOT / "data"
    )
    facts: list[tuple[str, str, str]] = []  # (file id, subject, code)
    ids: list[str] = []
    total_bytes = 0
    started = time.perf_counter()
    for number in range(args.docs):
        planted = [(f"vault{number}x{k}", f"{rng.randrange(10**6):06d}") for k in range(3)]
        data = document(rng, args.kb, planted)
        total_bytes += len(data)
        path, handle = store.stage()
        with handle:
            handle.write(data)
        file_id = store.add([(path, f"doc{number}.txt")], "bench", "user_data")[0].id
        ids.append(file_id)
        facts.extend((file_id, subject, code) for subject, code in planted)
    index_seconds = time.perf_counter() - started
    text_bytes = sum(len(store.text_of(record).encode()) for record in store.files_of("bench"))
    chunks = sum(len(store._index(record).chunks) for record in store.files_of("bench"))

    rows = []
    for label, scope in (("all files", "all"), ("one file", "one")):
        latencies: list[float] = []
        hits = anywhere = 0
        for _ in range(args.queries):
            file_id, subject, code = rng.choice(facts)
            chosen = ids if scope == "all" else [file_id]
            started = time.perf_counter()
            context = store.context_for(chosen, "bench", f"What is the access code of the {subject}?", args.budget)
            latencies.append((time.perf_counter() - started) * 1000)
            hits += bool(context.chunks) and code in context.chunks[0].text
            anywhere += any(code in chunk.text for chunk in context.chunks)
        n = args.queries
        rows.append((label, percentile(latencies, 0.5), percentile(latencies, 0.99), hits / n, anywhere / n))

    print(f"documents: {args.docs}, text: {total_bytes / 1e6:.1f} MB, chunks: {chunks}")
    per_doc = index_seconds / args.docs * 1000
    print(f"indexing (the whole upload path): {index_seconds:.2f} s, {per_doc:.0f} ms/doc")
    memory, stored = store.index_bytes() / 1e6, text_bytes / 1e6
    print(f"index in memory: {memory:.1f} MB (arrays + chunk texts); text in the database: {stored:.1f} MB")
    print()
    print(f"| context_for over | queries | p50 ms | p99 ms | fact in top chunk | fact in the {args.budget} tokens |")
    print("|---|---|---|---|---|---|")
    for label, p50, p99, hit, anywhere_share in rows:
        print(f"| {label} | {args.queries} | {p50:.1f} | {p99:.1f} | {hit:.0%} | {anywhere_share:.0%} |")
    store.close()


if __name__ == "__main__":
    main()
