"""llama.cpp's process-wide set-up: backend initialisation, log forwarding, load parameters and errors."""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass

import llama_cpp as llama

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


def ensure_backend() -> None:
    """Initialise llama.cpp once per process and route its log through Python logging."""
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
    """How to load a model for serving.

    `n_ctx` is the window one request may use (prompt + completion); `n_parallel` sequences run at once.
    With `kv_split` each sequence has a KV cache of its own, one window long; otherwise they share a
    unified KV cache of `kv_cells` tokens (0 = chosen from the other two, see `kv_size`).
    """

    n_ctx: int
    n_batch: int
    n_threads: int
    n_threads_batch: int
    n_parallel: int = 1
    kv_cells: int = 0
    kv_split: bool = False

    def kv_size(self, n_ctx: int) -> int:
        """KV cells to allocate: a window per sequence when split; else the setting, else room for four full
        windows (or every sequence's, if fewer)."""
        if self.kv_split:
            return n_ctx * self.n_parallel
        if self.kv_cells > 0:
            return max(self.kv_cells, n_ctx)
        return n_ctx * min(self.n_parallel, 4)
