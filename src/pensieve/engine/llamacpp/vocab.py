"""A model's vocabulary: tokenize, token bytes, end-of-generation and banned special tokens.

The server process loads only the vocabulary of a model (`vocab_only`: no weights, a few MB), so it
can format, tokenize and detokenize without a round trip to the worker process that holds the weights.
"""

from __future__ import annotations

import ctypes
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import llama_cpp as llama

from pensieve.engine.llamacpp.runtime import LlamaLoadError, ensure_backend
from pensieve.engine.special_text import SpecialTextGuard

# Tokens of multimodal placeholders that a text-only run must never produce (Gemma 3 marks them
# USER_DEFINED, so llama.cpp would print them as text even with special=False).
_PLACEHOLDER_TOKEN = re.compile(rb"^(<(start|end)_of_(image|audio|video)>|<(image|audio)_soft_token>|\[multimodal\])$")
_PIECE_BUFFER = 256


class LlamaVocab:
    """Tokenizer and special-token facts of one model; not thread-safe (one owner thread)."""

    def __init__(self, vocab: Any, owner: Any = None) -> None:
        self._vocab = vocab
        self._owner = owner  # a vocab-only model this object must free, or None
        self.n_vocab = int(llama.llama_vocab_n_tokens(vocab))
        self._piece_buffer = ctypes.create_string_buffer(_PIECE_BUFFER)
        self.eog_tokens, self.banned_tokens, special_texts = self._classify_special_tokens()
        # Message content must not become turn markers: see pensieve.engine.special_text.
        self.special_guard = SpecialTextGuard(special_texts)

    @classmethod
    def load(cls, path: Path) -> LlamaVocab:
        """Read only the vocabulary of a GGUF file (no weights)."""
        ensure_backend()
        params = llama.llama_model_default_params()
        params.vocab_only = True
        params.n_gpu_layers = 0
        model = llama.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise LlamaLoadError(f"llama.cpp could not read the vocabulary of {path.name} (unsupported or corrupt)")
        return cls(llama.llama_model_get_vocab(model), owner=model)

    def close(self) -> None:
        """Free the vocabulary-only model, if this object loaded one (idempotent)."""
        if self._owner is not None:
            llama.llama_model_free(self._owner)
            self._owner = None

    def _classify_special_tokens(self) -> tuple[frozenset[int], tuple[int, ...], list[str]]:
        eog: set[int] = set()
        banned: list[int] = []
        texts: list[str] = []  # what llama.cpp's special-token parsing matches in text
        control = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_UNUSED | llama.LLAMA_TOKEN_ATTR_UNKNOWN
        parsed = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_USER_DEFINED | llama.LLAMA_TOKEN_ATTR_UNKNOWN
        for token in range(self.n_vocab):
            attr = llama.llama_vocab_get_attr(self._vocab, token)
            if attr & parsed:
                texts.append(self._token_text(token))
            if llama.llama_vocab_is_eog(self._vocab, token):
                eog.add(token)
                continue
            if attr & control or (
                attr & llama.LLAMA_TOKEN_ATTR_USER_DEFINED
                and _PLACEHOLDER_TOKEN.match(llama.llama_vocab_get_text(self._vocab, token) or b"")
            ):
                banned.append(token)
        return frozenset(eog), tuple(banned), texts

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

    @cached_property
    def line_break_tokens(self) -> tuple[int, ...]:
        """Tokens that are only whitespace holding a line break ("\\n", "\\n\\n", " \\n"...).

        A chat transcript format bans them as an answer's first token (its turn ends at a line break).
        Found by decoding the whole vocabulary once (0.3 s for 262k tokens), then remembered.
        """
        found = []
        for token in range(self.n_vocab):
            piece = self.token_bytes(token)
            if piece and b"\n" in piece and not piece.strip():
                found.append(token)
        return tuple(found)

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for; control tokens give b""."""
        size = llama.llama_token_to_piece(self._vocab, token, self._piece_buffer, _PIECE_BUFFER, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
            return buffer.raw[:size]
        return self._piece_buffer.raw[:size]
