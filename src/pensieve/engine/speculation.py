"""Speculative decoding without a draft model: prompt-lookup (n-gram) drafts, sized by what they pay.

A sequence that copies from its input (a rewrite, an extraction, a quoted passage) keeps producing
tokens that already stand somewhere in its prompt or its own answer. `PromptLookup` finds the most
recent earlier occurrence of the sequence's last few tokens and proposes the tokens that followed it;
the scheduler evaluates them in the same step as the sequence's next token and keeps the ones the
model itself would have sampled (see `Scheduler._verify`).

A drafted token is not free here. The gemma-3 vocabulary has 262,144 entries, so each row of logits
is a 262k x 640 matrix product, more than half a one-token step. Worse, llama.cpp's CPU kernels handle
these rows well only four at a time (as measured; the cause is inside ggml): 2 rows cost more than twice
1, and 9 rows more than 12. The
measured cost of a step by its number of logits rows is `ROW_COST` (bench/README.md, "Speculative
decoding"); `Speculation.draft_length` picks the draft length whose expected accepted tokens per unit of
cost beat plain decoding, or none. The expected count comes from how long the match already agrees
with the sequence's last tokens (a copy in progress goes on) and the sequence's recent acceptance, so a
sequence that writes freely (an essay) drafts only where it visibly quotes.

Everything here runs in the worker process and is pure Python (no llama.cpp), so it is unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Sequence

# N-gram lengths tried, longest first: a 3-token match predicts a copy far better than a 2-token one;
# single tokens matched too often by chance to pay for their rows.
NGRAM_LENGTHS = (3, 2)
# Cost of one single-sequence step by its number of logits rows, relative to a 1-row step (1-thread CPU time
# and 2-thread wall time on the shared 2-core machine, gemma-3-270m, rounded to the safe side; the table is in
# bench/README.md). Only totals that are multiples of four are ever chosen: other sizes cost like the next.
ROW_COST = {1: 1.0, 4: 3.2, 8: 5.0, 12: 6.0, 16: 7.5}
# Longest draft (rows of logits it adds); the rows all drafts of a step may add are bounded by
# batch_context.SPECULATIVE_ROWS, which sizes llama.cpp's output buffer.
MAX_DRAFT = 15
# Speculate only while at most this many sequences sample in a step. Measured in-process (1 thread, greedy,
# loaded machine): rewrite + essay together 44.5 -> 79 tok/s with drafts for both; rewrite, essay, extract
# and rewrite together 58 -> 75 tok/s at 4 (62 when only 2 could draft). At 16 streams a step is
# compute-bound and its rows already amortise the output matrix: not measured beyond 4, so not allowed.
MAX_STREAMS = 4
# Required gain of expected tokens per unit of cost over plain decoding before drafting at all.
MIN_GAIN = 1.05
# Decay of the acceptance counts per verification: about the last five drafts decide.
DECAY = 0.8
# How far back a match's agreement with the sequence is measured (tokens).
MATCH_CAP = 32


class PromptLookup:
    """Index of a sequence's n-grams (prompt + answer) to the end of their latest earlier occurrence.

    `history` is the sequence's real tokens; it only grows. Indexing is lazy and incremental: each
    lookup indexes the tokens added since the last one, so a step costs O(new tokens + draft).
    """

    def __init__(self) -> None:
        self._ends: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # n-grams ending before this position are in `_ends`

    def draft(self, history: Sequence[int], limit: int) -> tuple[list[int], int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of `history`'s last n-gram, and
        how many tokens before them agree with the sequence's last ones (up to MATCH_CAP): a long agreement
        means the sequence is copying that passage, and the copy is likely to go on."""
        end = len(history)
        # Index the n-grams ending at positions [indexed, end - 1]: not the one ending at `end`, which is
        # the suffix being looked up (its own occurrence predicts nothing).
        for stop in range(max(self._indexed, 1), end):
            for n in NGRAM_LENGTHS:
                if stop >= n:
                    self._ends[tuple(history[stop - n : stop])] = stop
        self._indexed = max(self._indexed, end)
        for n in NGRAM_LENGTHS:
            if end < n:
                continue
            found = self._ends.get(tuple(history[end - n : end]))
            if found is None:
                continue
            matched = n
            while matched < min(MATCH_CAP, found) and history[found - 1 - matched] == history[end - 1 - matched]:
                matched += 1
            # A match that runs into the suffix itself continues as a repeat (LZ77's overlapping copy):
            # the draft's own earlier tokens stand for the history past its end.
            draft: list[int] = []
            for offset in range(found, found + limit):
                draft.append(history[offset] if offset < end else draft[offset - end])
            return draft, matched
        return [], 0


class Speculation:
    """One sequence's drafter and its recent acceptance, which decide how long a draft pays."""

    def __init__(self, rid: int) -> None:
        self.rid = rid
        self.lookup = PromptLookup()
        # Decayed counts of accepted and rejected draft tokens; the prior (0.8) alone pays for no draft: a
        # sequence drafts once a match agrees with it for a while, or its drafts have been accepted.
        self._accepted = 4.0
        self._rejected = 1.0

    @property
    def acceptance(self) -> float:
        """The sequence's recent rate of accepted draft tokens."""
        return self._accepted / (self._accepted + self._rejected)

    def propose(self, history: Sequence[int], rows: int, limit: int) -> list[int]:
        """The draft for this step (maybe none) when the step already has `rows` logits rows and at most
        `limit` drafted tokens could be used (the request's remaining tokens, KV reservation, window)."""
        draft, matched = self.lookup.draft(history, min(limit, MAX_DRAFT))
        return draft[: self.draft_length(rows, len(draft), matched)]

    def draft_length(self, rows: int, limit: int, matched: int) -> int:
        """How many tokens to draft when the step already has `rows` logits rows; 0: do not draft.

        The chance that each drafted token is accepted is estimated from the sequence's recent drafts
        together with the `matched` tokens that already agree with the source (each counted as one more
        accepted token: the rule of succession over both). The length whose expected emitted tokens per
        unit of step cost is best wins, if it beats plain decoding by MIN_GAIN.
        """
        acceptance = (self._accepted + matched) / (self._accepted + self._rejected + matched + 1)
        best, best_gain = 0, MIN_GAIN
        base = _cost(rows)
        for total in ROW_COST:
            length = total - rows
            if length <= 0 or length > limit:
                continue
            gain = (rows - 1 + expected_tokens(acceptance, length)) / rows * base / _cost(total)
            if gain > best_gain:
                best, best_gain = length, gain
        return best

    def record(self, drafted: int, accepted: int) -> None:
        """Learn from one verified draft: `accepted` of its `drafted` tokens were the model's own choice."""
        self._accepted = self._accepted * DECAY + accepted
        self._rejected = self._rejected * DECAY + (1 if accepted < drafted else 0)


def expected_tokens(acceptance: float, length: int) -> float:
    """Tokens a step emits with a `length`-token draft when each is accepted with chance `acceptance`
    (until the first rejection): 1 + a + a^2 + ... + a^length."""
    if acceptance >= 1.0:
        return float(length + 1)
    return (1.0 - acceptance ** (length + 1)) / (1.0 - acceptance)


def _cost(rows: int) -> float:
    """A step's relative cost by its logits rows: the table, rounded up to a tile for the unlisted."""
    for total, cost in ROW_COST.items():
        if rows <= total:
            return cost
    return ROW_COST[max(ROW_COST)] * rows / max(ROW_COST)
