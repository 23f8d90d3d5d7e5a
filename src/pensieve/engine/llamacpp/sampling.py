"""One sequence's sampler: llama.cpp's sampler chain for its parameters, and a numpy fast path for greedy.

Every job bans thousands of tokens (the vocabulary's unused and control tokens: ~6,250 of Gemma 3's
262k), so everything built per token list here is built with numpy: making a sampler from Python
tuples of ctypes structs cost ~8 ms a job, paid by every request's time to first token and, for a
burst of requests, by every running stream (bench/README.md has the figures).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp as llama
import numpy as np

from pensieve.engine_api import SamplingParams

NEG_INF = float("-inf")
# How many recent tokens repeat/presence/frequency penalties look at (llama.cpp's default).
PENALTY_LAST_N = 64
# llama_logit_bias as numpy sees it, to hand llama.cpp a whole bias list without a Python loop.
_LOGIT_BIAS = np.dtype([("token", "<i4"), ("bias", "<f4")])


class GreedyArgmax:
    """Greedy decoding under logit biases, done with numpy on the logits in place: no 262k-entry
    candidate array as llama.cpp's chain builds.

    When no bias raises a token (bans and negative biases only) and the unbiased argmax is not a biased
    token, it is the biased argmax too (the first maximum: biases only lower the others), so the biases
    are not even applied; otherwise they are, on the row in place, and undone.
    """

    def __init__(self, tokens: np.ndarray, biases: np.ndarray) -> None:
        # Sorted and unique, each token's biases summed: a token listed twice is biased by both.
        self.tokens, where = np.unique(tokens, return_inverse=True)
        self.biases = np.zeros(len(self.tokens), dtype=np.float32)
        np.add.at(self.biases, where, biases)
        self._lowers_only = bool((self.biases <= 0).all())

    def pick(self, logits: np.ndarray) -> int:
        """The argmax of `logits` plus the biases (the row is left as it was)."""
        token = int(logits.argmax())
        if not len(self.tokens):
            return token
        if self._lowers_only:
            at = int(np.searchsorted(self.tokens, token))
            if at == len(self.tokens) or self.tokens[at] != token:
                return token
        # In place and restored (the logprobs of this token are read from the same row later): cheaper
        # than copying the 1 MB row.
        original = logits[self.tokens]
        logits[self.tokens] += self.biases
        try:
            return int(logits.argmax())
        finally:
            logits[self.tokens] = original


class SequenceSampler:
    """The sampler chain of one sequence, plus its grammar when the output must follow one, and
    `greedy` when the chain is plain greedy decoding with logit biases only (then used instead)."""

    def __init__(self, chain: Any, grammar: Any | None, greedy: GreedyArgmax | None = None) -> None:
        self.chain = chain
        self.grammar = grammar
        self.greedy = greedy

    def free(self) -> None:
        """Release the native samplers (idempotent)."""
        if self.chain is not None:
            llama.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar is not None:
            llama.llama_sampler_free(self.grammar)
            self.grammar = None


def build_sampler(
    model: Any, n_vocab: int, params: SamplingParams, *, ban: Sequence[int] = (), grammar: str | None = None
) -> SequenceSampler:
    """A fresh sampler for one sequence: logit bias (incl. the `ban`ned tokens), top-k, penalties, then
    greedy or top-p / min-p / temperature / seeded draw; a GBNF grammar is checked separately.
    ValueError when the grammar cannot be parsed."""
    biases = np.empty(len(params.logit_bias) + len(ban), dtype=_LOGIT_BIAS)
    if params.logit_bias:
        biases[: len(params.logit_bias)] = np.array(list(params.logit_bias), dtype=_LOGIT_BIAS)
    biases["token"][len(params.logit_bias) :] = ban
    biases["bias"][len(params.logit_bias) :] = NEG_INF
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if len(biases):  # llama.cpp copies the list
        pointer = biases.ctypes.data_as(ctypes.POINTER(llama.llama_logit_bias))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_logit_bias(n_vocab, len(biases), pointer))
    penalised = params.repeat_penalty != 1.0 or bool(params.presence_penalty) or bool(params.frequency_penalty)
    # top_k before the penalties: penalising all 262k candidates every token costs a noticeable share of
    # the speed. Plain greedy decoding needs no top_k at all (the argmax is the argmax): skipping its
    # partial sort of the whole vocabulary saves time on every token (figures: bench/README.md).
    if params.top_k > 0 and (params.temperature > 0.0 or penalised):
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(params.top_k))
    if penalised:
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, params.repeat_penalty, params.frequency_penalty, params.presence_penalty
            ),
        )
    if params.temperature <= 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
    else:
        if params.top_p < 1.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(params.min_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else llama.LLAMA_DEFAULT_SEED
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    greedy = None
    if params.temperature <= 0.0 and not penalised and grammar is None:
        greedy = GreedyArgmax(biases["token"], biases["bias"])
    grammar_sampler = None
    if grammar is not None:
        vocab = llama.llama_model_get_vocab(model)
        grammar_sampler = llama.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not grammar_sampler:
            llama.llama_sampler_free(chain)
            raise ValueError("the grammar could not be parsed")
    return SequenceSampler(chain, grammar_sampler, greedy)
