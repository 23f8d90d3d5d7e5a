"""llama.cpp through llama-cpp-python's low-level API: load a GGUF, tokenize, decode, sample.

This is the ONLY module that imports `llama_cpp`. It is synchronous and not thread-safe: one thread
owns a LlamaCppModel (the async LocalEngine arranges that). It uses the C API directly (llama_batch,
llama_decode, a llama_sampler chain per request) rather than the high-level `Llama` class, so that it
controls the KV cache (prompt-prefix reuse), sampling (seeds, logit bias, banned tokens) and the
per-token loop that the continuous-batching scheduler will grow from.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as llama
import numpy as np

from pensieve.engine.types import SamplingParams

logger = logging.getLogger(__name__)

# Tokens of multimodal placeholders that a text-only run must never produce (Gemma 3 marks them
# USER_DEFINED, so llama.cpp would print them as text even with special=False).
_PLACEHOLDER_TOKEN = re.compile(rb"^(<(start|end)_of_(image|audio|video)>|<(image|audio)_soft_token>|\[multimodal\])$")
_NEG_INF = float("-inf")
# How many recent tokens repeat/presence/frequency penalties look at (llama.cpp's default).
PENALTY_LAST_N = 64

_backend_lock = threading.Lock()
_backend_ready = False
# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_GGML_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
_GGML_CONTINUATION = 5
_llama_logger = logging.getLogger("pensieve.llama_cpp")
_last_llama_level = logging.DEBUG


@llama.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty (every tensor at load): only its warnings and errors go above DEBUG.
    global _last_llama_level
    python_level = _last_llama_level if level == _GGML_CONTINUATION else _GGML_LEVELS.get(level, logging.DEBUG)
    _last_llama_level = python_level
    if _llama_logger.isEnabledFor(python_level):
        _llama_logger.log(python_level, "%s", text.decode("utf-8", errors="replace").rstrip())


def _ensure_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama.llama_backend_init()
            llama.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
            _backend_ready = True


class LlamaLoadError(RuntimeError):
    """llama.cpp refused to load the model file or to create a context for it."""


class LlamaDecodeError(RuntimeError):
    """llama_decode failed (out of KV cells, aborted, or an internal error)."""


@dataclass(frozen=True)
class LlamaConfig:
    """How to load a model: context size, batch size, threads."""

    n_ctx: int
    n_batch: int
    n_threads: int
    n_threads_batch: int


class LlamaCppModel:
    """One loaded GGUF model with a single-sequence context."""

    def __init__(self, path: Path, config: LlamaConfig) -> None:
        _ensure_backend()
        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = llama.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise LlamaLoadError(f"llama.cpp could not load {path.name} (unsupported or corrupt model)")
        self._model = model
        trained = llama.llama_model_n_ctx_train(model)
        n_ctx = min(config.n_ctx, trained) if config.n_ctx > 0 else trained
        context_params = llama.llama_context_default_params()
        context_params.n_ctx = n_ctx
        context_params.n_batch = config.n_batch
        context_params.n_ubatch = config.n_batch
        context_params.n_seq_max = 1
        # Only the last prompt token needs logits; sizing the output for one row instead of n_batch
        # rows of a 262k vocabulary saves ~500 MB of compute buffer.
        context_params.n_outputs_max = 1
        context_params.n_threads = config.n_threads
        context_params.n_threads_batch = config.n_threads_batch
        context_params.no_perf = True
        # A full-size sliding-window cache lets a later request reuse any cached prompt prefix.
        context_params.swa_full = True
        ctx = llama.llama_init_from_model(model, context_params)
        if not ctx:
            llama.llama_model_free(model)
            raise LlamaLoadError(f"llama.cpp could not create a {n_ctx}-token context for {path.name}")
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)
        self._vocab = llama.llama_model_get_vocab(model)
        self.n_ctx = llama.llama_n_ctx(ctx)
        self.n_batch = config.n_batch
        self.n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        self._batch = llama.llama_batch_init(self.n_batch, 0, 1)
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._cached_tokens: list[int] = []  # tokens whose KV entries are in the context, in order
        self.eog_tokens, self.banned_tokens = self._classify_special_tokens()
        self._closed = False
        self._warm_up()

    def _warm_up(self) -> None:
        """Run one small prompt batch and one single-token step, then forget them.

        The first decodes after a load pay for page faults on the mmapped weights and for allocating
        compute buffers (~0.3 s here); paying it at load keeps it out of the first request's latency.
        """
        try:
            warm = self.tokenize("Hello, world. This warms the model up.", add_special=True, parse_special=False)
            self._decode(warm[:-1], 0, want_logits=False)
            self._decode(warm[-1:], len(warm) - 1, want_logits=True)
        except LlamaDecodeError:
            logger.warning("warm-up decode failed; the first request will be slower", exc_info=True)
        finally:
            self._reset_cache()

    # --- vocabulary -------------------------------------------------------------------------------

    def _classify_special_tokens(self) -> tuple[frozenset[int], tuple[int, ...]]:
        eog: set[int] = set()
        banned: list[int] = []
        control = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_UNUSED | llama.LLAMA_TOKEN_ATTR_UNKNOWN
        for token in range(self.n_vocab):
            if llama.llama_vocab_is_eog(self._vocab, token):
                eog.add(token)
                continue
            attr = llama.llama_vocab_get_attr(self._vocab, token)
            if attr & control or (
                attr & llama.LLAMA_TOKEN_ATTR_USER_DEFINED
                and _PLACEHOLDER_TOKEN.match(llama.llama_vocab_get_text(self._vocab, token) or b"")
            ):
                banned.append(token)
        return frozenset(eog), tuple(banned)

    @property
    def bos_text(self) -> str:
        """Text of the beginning-of-sequence token (for chat templates)."""
        return self._token_text(llama.llama_vocab_bos(self._vocab))

    @property
    def eos_text(self) -> str:
        """Text of the end-of-sequence token (for chat templates)."""
        return self._token_text(llama.llama_vocab_eos(self._vocab))

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return (llama.llama_vocab_get_text(self._vocab, token) or b"").decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Token ids of `text`; `add_special` adds BOS when the model wants it."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama.llama_token * capacity)()
        count = llama.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_special, parse_special)
        if count < 0:  # buffer too small: llama.cpp returns minus the needed size
            capacity = -count
            buffer = (llama.llama_token * capacity)()
            count = llama.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_special, parse_special)
        return list(buffer[:count])

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for; control tokens give b""."""
        size = llama.llama_token_to_piece(self._vocab, token, self._piece_buffer, 256, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
            return buffer.raw[:size]
        return self._piece_buffer.raw[:size]

    # --- generation -------------------------------------------------------------------------------

    def _build_sampler(self, params: SamplingParams, biases: Sequence[tuple[int, float]]) -> ctypes.c_void_p:
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        if biases:
            array = (llama.llama_logit_bias * len(biases))(*[llama.llama_logit_bias(t, b) for t, b in biases])
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_logit_bias(self.n_vocab, len(biases), array))
        # top_k before the penalties: penalising 262k candidates every token costs ~10% of the speed.
        if params.top_k > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(params.top_k))
        if params.repeat_penalty != 1.0 or params.presence_penalty or params.frequency_penalty:
            llama.llama_sampler_chain_add(
                chain,
                llama.llama_sampler_init_penalties(
                    self.n_vocab,
                    PENALTY_LAST_N,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.temperature <= 0.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
            return chain  # type: ignore[no-any-return]
        if params.top_p < 1.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(params.min_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else llama.LLAMA_DEFAULT_SEED
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain  # type: ignore[no-any-return]

    def _decode(
        self, tokens: Sequence[int], start: int, want_logits: bool, cancelled: Callable[[], bool] | None = None
    ) -> bool:
        """Evaluate tokens at positions start.. in chunks of n_batch; logits for the last one only.

        Returns False when `cancelled` said stop between two chunks of a long prompt.
        """
        batch = self._batch
        for offset in range(0, len(tokens), self.n_batch):
            if cancelled is not None and offset and cancelled():
                return False
            chunk = tokens[offset : offset + self.n_batch]
            batch.n_tokens = len(chunk)
            for index, token in enumerate(chunk):
                batch.token[index] = token
                batch.pos[index] = start + offset + index
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = 0
                batch.logits[index] = 0
            is_last_chunk = offset + len(chunk) == len(tokens)
            batch.logits[len(chunk) - 1] = 1 if (want_logits and is_last_chunk) else 0
            status = llama.llama_decode(self._ctx, batch)
            if status != 0:
                self._reset_cache()
                raise LlamaDecodeError(f"llama_decode failed with status {status}")
            self._cached_tokens.extend(chunk)
        return True

    def _reset_cache(self) -> None:
        llama.llama_memory_clear(self._memory, True)
        self._cached_tokens = []

    def _reuse_prefix(self, prompt: Sequence[int]) -> int:
        """Keep the KV of the longest cached prefix of `prompt` (minus one token for fresh logits)."""
        common = 0
        for cached, wanted in zip(self._cached_tokens, prompt, strict=False):
            if cached != wanted:
                break
            common += 1
        common = min(common, len(prompt) - 1)
        if common <= 0 or not llama.llama_memory_seq_rm(self._memory, 0, common, -1):
            self._reset_cache()
            return 0
        self._cached_tokens = self._cached_tokens[:common]
        return common

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        max_tokens: int,
        forbid_eog_first: bool,
        cancelled: Callable[[], bool],
    ) -> Iterator[int]:
        """Yield sampled token ids (EOG included, then stop) until max_tokens or cancellation."""
        if self._closed:
            raise LlamaDecodeError("model is closed")
        reused = self._reuse_prefix(prompt)
        # The last prompt token is always evaluated on its own. Logits depend (in low bits, and
        # through greedy ties beyond) on how tokens were batched; decoding it alone makes a repeated
        # request, which reuses every other token from the cache, reproduce the first run exactly.
        if not self._decode(prompt[reused:-1], reused, want_logits=False, cancelled=cancelled):
            return
        if cancelled():
            return
        self._decode(prompt[-1:], len(prompt) - 1, want_logits=True)
        biases = [*params.logit_bias, *((token, _NEG_INF) for token in self.banned_tokens)]
        first_biases = [*biases, *((token, _NEG_INF) for token in self.eog_tokens)] if forbid_eog_first else biases
        sampler = self._build_sampler(params, first_biases)
        try:
            for produced in range(max_tokens):
                if cancelled():
                    return
                # llama_sampler_sample also accepts the token into the chain (penalty history).
                token = llama.llama_sampler_sample(sampler, self._ctx, -1)
                yield token
                if token in self.eog_tokens or produced + 1 == max_tokens:
                    return
                if produced == 0 and forbid_eog_first:
                    # The EOG ban applies to the first token only; swap in the everyday chain.
                    llama.llama_sampler_free(sampler)
                    sampler = self._build_sampler(params, biases)
                    llama.llama_sampler_accept(sampler, token)
                self._decode([token], len(self._cached_tokens), want_logits=True)
        finally:
            llama.llama_sampler_free(sampler)

    def token_logprob(self, token: int) -> float:
        """Log-probability the model gave `token` at the step that sampled it (call before the next decode).

        Raw model probabilities (before temperature and truncation) are what measures the model's own
        confidence, which the burst controller's cascade compares with a threshold.
        """
        pointer = llama.llama_get_logits_ith(self._ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        return float(logits[token]) - log_total

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        if self._closed:
            return
        self._closed = True
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)
