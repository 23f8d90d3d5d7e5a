"""A loaded model with a multi-sequence context: the compute side of continuous batching.

One `llama_decode` evaluates a batch holding tokens of many sequences (distinct `seq_id`s in one
unified KV cache); each sequence has its own sampler chain. The scheduler decides what goes into a
batch; this class only runs it, samples, measures log-probabilities and manages KV sequences.
Not thread-safe: the worker process's single scheduler thread owns it.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as llama
import numpy as np

from pensieve.engine.llamacpp.runtime import LlamaConfig, LlamaDecodeError, LlamaLoadError, ensure_backend
from pensieve.engine.llamacpp.sampling import NEG_INF, SequenceSampler, build_sampler
from pensieve.engine.llamacpp.vocab import LlamaVocab
from pensieve.engine_api import SamplingParams

logger = logging.getLogger(__name__)

# llama_token_data as numpy sees it, to build a full candidate array without a Python loop.
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
# Longest input to embed: the embedding context's size (its KV cache holds one input at a time).
EMBEDDING_MAX_TOKENS = 2048
# Tokens of an input embedded per llama_decode call. Embedding costs about twice a plain prefill of the
# same tokens (mean pooling needs every token's output, and each output's 262k-vocabulary logits are
# computed too), so a piece is kept short; between pieces the worker decodes steps for its running
# streams. Smaller pieces made streams smoother but cost short documents much of their embedding speed.
# The figures: bench/README.md, "Figures formerly quoted in code comments".
EMBEDDING_CHUNK = 128
# Prompt positions a step may score (each needs its own row of logits, 1 MB for a 262k vocabulary). The
# logits of every output row are held by llama.cpp until the next decode, so this bounds what prompt scoring
# adds to the output and compute buffers (16 MB each), however long the prompt; each row's log-probability
# is read right after its decode and the row forgotten.
SCORING_ROWS = 16
# Draft tokens a step may verify (engine/speculation.py), each with its own row of logits: 16 MB more output
# buffer, bounded however many sequences speculate.
SPECULATIVE_ROWS = 16


@dataclass(frozen=True)
class BatchItem:
    """One token of a step: its sequence, position, and whether its logits are needed."""

    token: int
    pos: int
    seq: int
    logits: bool


def normalised(vector: np.ndarray) -> list[float]:
    """`vector` scaled to unit length (a zero vector stays as it is), as a list of floats."""
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).tolist()  # type: ignore[no-any-return]


class BatchContext:
    """Model weights + one context with `n_parallel` sequences in a unified KV cache."""

    def __init__(self, path: Path, config: LlamaConfig) -> None:
        ensure_backend()
        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = llama.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise LlamaLoadError(f"llama.cpp could not load {path.name} (unsupported or corrupt model)")
        self._model = model
        trained = llama.llama_model_n_ctx_train(model)
        self.window = min(config.n_ctx, trained) if config.n_ctx > 0 else trained
        self.n_parallel = max(1, config.n_parallel)
        params = llama.llama_context_default_params()
        params.n_ctx = config.kv_size(self.window)
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = self.n_parallel
        # Logits are needed for one token per sequence and step, plus the prompt positions a scoring request
        # measures (SCORING_ROWS at most a step) and the drafts verified (SPECULATIVE_ROWS): sizing the output
        # buffer for that instead of n_batch rows of a 262k vocabulary saves hundreds of MB. llama.cpp aborts
        # on a batch with more outputs than this.
        params.n_outputs_max = self.n_parallel + SCORING_ROWS + SPECULATIVE_ROWS
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads_batch
        params.no_perf = True
        # Split: each sequence attends to its own cells only. Unified: any sequence may use any cell (less
        # memory), but lockstep decoding interleaves the sequences' cells, and a new prompt then lands in the
        # holes a finished one left all over the cache: llama.cpp's CPU flash attention can skip a tile of
        # cells only when none is the prompt's, so prefill got up to 1.7x slower on a busy cache
        # (docs/engine.md, "KV layout"; the figures: bench/README.md, bench_vs_llama_server.py).
        params.kv_unified = not config.kv_split
        params.swa_full = True  # a full-size sliding-window cache lets later requests reuse any cached prefix
        ctx = llama.llama_init_from_model(model, params)
        if not ctx:
            llama.llama_model_free(model)
            raise LlamaLoadError(f"llama.cpp could not create a {params.n_ctx}-token context for {path.name}")
        self._ctx = ctx
        self._config = config
        self._memory = llama.llama_get_memory(ctx)
        self.vocab = LlamaVocab(llama.llama_model_get_vocab(model))
        self.kv_size = int(llama.llama_n_ctx(ctx))
        self.n_batch = config.n_batch
        self.n_vocab = self.vocab.n_vocab
        # One ctypes array type for a row of logits, made once: numpy's as_array() builds a new one on every
        # call, paid per sequence and step (bench/README.md has the cost).
        self._logits_row = ctypes.c_float * self.n_vocab
        self._batch = llama.llama_batch_init(self.n_batch, 0, 1)
        self._embedding_ctx: Any = None
        self._embedding_batch: Any = None
        self.n_embd = int(llama.llama_model_n_embd(model))
        self._closed = False
        self._warm_up()

    def _warm_up(self) -> None:
        """One prompt batch and one single-token step, then forget them: page faults and buffer set-up
        are paid at load instead of by the first request (bench/README.md has the figure)."""
        try:
            warm = self.vocab.tokenize("Hello, world. This warms the model up.", add_special=True, parse_special=False)
            self.decode([BatchItem(t, i, 0, False) for i, t in enumerate(warm[:-1])])
            self.decode([BatchItem(warm[-1], len(warm) - 1, 0, True)])
        except LlamaDecodeError:
            logger.warning("warm-up decode failed; the first request will be slower", exc_info=True)
        finally:
            llama.llama_memory_clear(self._memory, True)

    # --- decoding ---------------------------------------------------------------------------------

    def decode(self, items: Sequence[BatchItem]) -> None:
        """Evaluate one step (at most n_batch tokens, any mix of sequences)."""
        if self._closed:
            raise LlamaDecodeError("model is closed")
        batch = self._batch
        batch.n_tokens = len(items)
        for index, item in enumerate(items):
            batch.token[index] = item.token
            batch.pos[index] = item.pos
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = item.seq
            batch.logits[index] = 1 if item.logits else 0
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            reason = "no free KV cells" if status == 1 else f"status {status}"
            raise LlamaDecodeError(f"llama_decode failed ({reason})")

    def forget(self, seq: int, start: int = 0) -> None:
        """Drop a sequence's KV entries from position `start` on (0: the whole sequence)."""
        if not llama.llama_memory_seq_rm(self._memory, seq, start, -1):
            # Partial removal can be refused (recurrent models): drop the whole sequence instead.
            llama.llama_memory_seq_rm(self._memory, seq, 0, -1)

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        """Share the first `length` positions of `source`'s KV with `target` (no recomputation)."""
        llama.llama_memory_seq_cp(self._memory, source, target, 0, length)

    # --- sampling ---------------------------------------------------------------------------------

    def sampler(
        self, params: SamplingParams, *, ban: Sequence[int] = (), grammar: str | None = None
    ) -> SequenceSampler:
        """A fresh sampler for one sequence (`sampling.build_sampler`); ValueError for a bad grammar."""
        return build_sampler(self._model, self.n_vocab, params, ban=ban, grammar=grammar)

    def accept(self, sampler: SequenceSampler, token: int) -> None:
        """Tell a sampler about a token chosen elsewhere (penalty history, grammar state)."""
        llama.llama_sampler_accept(sampler.chain, token)
        if sampler.grammar is not None:
            llama.llama_sampler_accept(sampler.grammar, token)

    def save_logits(self, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A copy of batch entry `index`'s logits (1 MB for a 262k vocabulary), to sample from later."""
        row: np.ndarray[Any, np.dtype[np.float32]] = self._logits(index).copy()
        return row

    def sample(self, sampler: SequenceSampler, index: int | None, *, saved: np.ndarray | None = None) -> int:
        """Pick the next token from the logits of batch entry `index`, or from `saved` ones (index None),
        and accept it.

        With a grammar, the token is drawn without it first and only checked (one candidate); only when
        the grammar rejects it is the grammar applied to the whole vocabulary and the draw repeated.
        That keeps constrained output near full speed, as llama.cpp's own common sampler does.
        """
        if sampler.greedy is not None:
            return sampler.greedy.pick(self._row(index, saved))
        if index is not None and sampler.grammar is None:
            return int(llama.llama_sampler_sample(sampler.chain, self._ctx, index))  # draws and accepts
        row = self._row(index, saved)
        token = self._apply(sampler.chain, row)  # what llama_sampler_sample does, without accepting yet
        if sampler.grammar is not None:
            single = (llama.llama_token_data * 1)(llama.llama_token_data(token, 1.0, 0.0))
            check = llama.llama_token_data_array(single, 1, -1, False)
            llama.llama_sampler_apply(sampler.grammar, ctypes.byref(check))
            if single[0].logit == NEG_INF:  # rejected: draw again from what the grammar allows
                token = self._apply(sampler.chain, row, first=sampler.grammar)
            llama.llama_sampler_accept(sampler.grammar, token)
        # Only the token kept enters the chain's history (the penalties'), not a draw the grammar refused.
        llama.llama_sampler_accept(sampler.chain, token)
        return token

    def _apply(self, chain: Any, logits: np.ndarray, first: Any = None) -> int:
        """The token `chain` (after the `first` sampler, if any) selects from all of `logits`."""
        candidates = np.empty(self.n_vocab, dtype=_TOKEN_DATA)
        candidates["id"] = np.arange(self.n_vocab, dtype=np.int32)
        candidates["logit"] = logits
        candidates["p"] = 0.0
        pointer = candidates.ctypes.data_as(ctypes.POINTER(llama.llama_token_data))
        array = llama.llama_token_data_array(pointer, self.n_vocab, -1, False)
        if first is not None:
            llama.llama_sampler_apply(first, ctypes.byref(array))
        llama.llama_sampler_apply(chain, ctypes.byref(array))
        return int(pointer[array.selected].id)

    def _row(self, index: int | None, saved: np.ndarray | None) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Batch entry `index`'s logits, or the `saved` ones when index is None."""
        if index is None:
            assert saved is not None, "no batch entry and no saved logits"
            return saved
        return self._logits(index)

    def _logits(self, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        pointer = llama.llama_get_logits_ith(self._ctx, index)
        if not pointer:
            raise LlamaDecodeError(f"no logits for batch entry {index}")
        row = self._logits_row.from_address(ctypes.addressof(pointer.contents))
        return np.frombuffer(memoryview(row).cast("B"), dtype=np.float32)

    def logprobs(
        self, index: int | None, token: int, top_n: int, *, saved: np.ndarray | None = None
    ) -> tuple[float, list[tuple[int, float]]]:
        """Log-probability of `token` at batch entry `index` (or in `saved` logits, index None) and the
        `top_n` likeliest tokens.

        Raw model probabilities (before temperature and truncation): what measures the model's own
        confidence, which OpenAI's `logprobs` and the burst controller's cascade both want.
        """
        logits = self._row(index, saved)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        top: list[tuple[int, float]] = []
        if top_n > 0:
            best = np.argpartition(logits, -top_n)[-top_n:]
            best = best[np.argsort(-logits[best])]
            top = [(int(t), float(logits[t]) - log_total) for t in best]
        return float(logits[token]) - log_total, top

    # --- embeddings -------------------------------------------------------------------------------

    def embed_chunk(self, tokens: Sequence[int], start: int) -> np.ndarray:
        """The sum of the final hidden states of one piece of an input (positions start..), float64.

        `start` 0 begins a new input. The embedding context keeps the input's earlier pieces in its KV
        cache, so causal attention sees the whole input; summing each piece's mean x its length gives
        the mean over the input. Pieces of one fixed size make the same input give the same vector
        whatever else the worker is doing, and let the worker decode other requests in between.
        """
        if not tokens or len(tokens) > EMBEDDING_CHUNK or start + len(tokens) > EMBEDDING_MAX_TOKENS:
            raise ValueError(f"an embedding piece must have 1..{EMBEDDING_CHUNK} tokens within the input limit")
        ctx = self._embedding_context()
        if start == 0:
            llama.llama_memory_clear(llama.llama_get_memory(ctx), True)
        batch = self._embedding_batch
        batch.n_tokens = len(tokens)
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = start + index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = 1  # mean pooling needs every token's output
        status = llama.llama_decode(ctx, batch)
        if status != 0:
            raise LlamaDecodeError(f"embedding decode failed (status {status})")
        pointer = llama.llama_get_embeddings_seq(ctx, 0)
        mean = np.ctypeslib.as_array(pointer, shape=(self.n_embd,)).astype(np.float64)
        return mean * len(tokens)

    def _embedding_context(self) -> Any:
        if self._embedding_ctx is None:
            params = llama.llama_context_default_params()
            params.n_ctx = EMBEDDING_MAX_TOKENS
            params.n_batch = params.n_ubatch = EMBEDDING_CHUNK
            params.n_seq_max = 1
            params.n_threads = self._config.n_threads
            params.n_threads_batch = self._config.n_threads_batch
            params.embeddings = True
            params.pooling_type = llama.LLAMA_POOLING_TYPE_MEAN
            params.no_perf = True
            ctx = llama.llama_init_from_model(self._model, params)
            if not ctx:
                raise LlamaDecodeError("could not create the embedding context")
            self._embedding_ctx = ctx
            self._embedding_batch = llama.llama_batch_init(EMBEDDING_CHUNK, 0, 1)
        return self._embedding_ctx

    def close(self) -> None:
        """Free the contexts and the model (idempotent)."""
        if self._closed:
            return
        self._closed = True
        llama.llama_batch_free(self._batch)
        if self._embedding_ctx is not None:
            llama.llama_batch_free(self._embedding_batch)
            llama.llama_free(self._embedding_ctx)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)
