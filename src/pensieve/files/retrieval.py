"""Choosing the passages of a request's files that best answer its question, within a token budget.

`select` ranks every chunk of the named files by its BM25 score for the query and keeps the best ones
whose tokens fit the budget (a chunk that does not fit is skipped for a smaller one further down). When
no word of the query occurs in any file ("summarise this"), the files' first chunks are taken instead,
in document order, so the model still sees the beginning of each file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pensieve.files.chunks import Chunk
from pensieve.files.index import FileIndex

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About four characters per token: the estimate used when the caller has no tokenizer at hand."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class RetrievedChunk:
    """One chosen passage: which file, where in it, how well it matched, its text and its tokens."""

    file_id: str
    filename: str
    page: int | None
    line_start: int
    line_end: int
    score: float
    text: str
    tokens: int

    @property
    def location(self) -> str:
        """ "page 7" or "lines 10-32"."""
        return Chunk(self.text, self.page, self.line_start, self.line_end).location


@dataclass(frozen=True)
class RetrievedContext:
    """The passages chosen for a request, best first, and the tokens they take out of the budget."""

    chunks: list[RetrievedChunk] = field(default_factory=list)
    tokens: int = 0
    token_budget: int = 0
    # The kinds of private data the named files hold (their upload verdicts), whatever passages were chosen.
    private_kinds: tuple[str, ...] = ()

    def as_prompt(self) -> str:
        """The passages as one block of text for a prompt, each headed by its file and place."""
        return "\n\n".join(f"[{c.filename}, {c.location}]\n{c.text}" for c in self.chunks)


@dataclass(frozen=True)
class NamedIndex:
    """A file's index with the id and display name its passages are reported under."""

    file_id: str
    filename: str
    index: FileIndex


def select(
    files: Sequence[NamedIndex], query: str, token_budget: int, count_tokens: TokenCounter = estimate_tokens
) -> RetrievedContext:
    """The best passages of `files` for `query` whose tokens add up to at most `token_budget`."""
    ranked: list[tuple[float, int, NamedIndex, Chunk]] = []
    for named in files:
        scores = named.index.scores(query)
        ranked.extend(
            (float(scores[i]), i, named, chunk) for i, chunk in enumerate(named.index.chunks) if scores[i] > 0
        )
    if ranked:
        ranked.sort(key=lambda item: -item[0])
    else:  # nothing matched: the beginning of each file, in turn
        ranked = [(0.0, i, named, chunk) for named in files for i, chunk in enumerate(named.index.chunks[:8])]
        ranked.sort(key=lambda item: item[1])
    chosen: list[RetrievedChunk] = []
    used = 0
    for score, _, named, chunk in ranked:
        tokens = count_tokens(chunk.text)
        if used + tokens > token_budget:
            continue
        used += tokens
        chosen.append(
            RetrievedChunk(
                named.file_id, named.filename, chunk.page, chunk.line_start, chunk.line_end, score, chunk.text, tokens
            )
        )
        if token_budget - used < 16:  # no chunk is that small: stop looking
            break
    return RetrievedContext(chosen, used, token_budget)
