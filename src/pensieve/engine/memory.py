"""How much memory a model will take once loaded: an estimate made from its GGUF header before loading it.

estimate = file size (the weights are mmapped and end up resident)
         + KV cache: cells x per-token KV bytes, where per-token bytes = sum over layers of
           2 (K and V) x n_head_kv x head_dim x 2 bytes (f16); head_dim is `key_length`/`value_length`
           when the header has them, else n_embd / n_head
         + a compute allowance: 10% of the file size + 64 MB (llama.cpp's compute and output buffers,
           the worker's Python interpreter).

`release_free_heap` gives the heap an unloaded model freed back to the OS.

Sliding-window models (Gemma 2/3) are loaded with `swa_full` (see `BatchContext`), so their SWA layers
hold a full-size cache too: every layer counts with all cells. The formula matched llama.cpp's own report
for Gemma 3 270M exactly, and the worker's whole RSS came close to the estimate (the check is recorded in
bench/README.md). It is an estimate, not a promise.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass, replace
from typing import Literal

from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.registry import ModelInfo
from pensieve.units import format_bytes

KV_BYTES_PER_VALUE = 2  # the KV cache is f16
COMPUTE_FRACTION = 0.10
COMPUTE_BASE_BYTES = 64 * 1000 * 1000
# The share of the machine's RAM the split KV layout may take under kv_layout "auto" (see choose_kv_layout).
SPLIT_KV_RAM_SHARE = 1 / 8


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a loaded model's estimated memory, in bytes."""

    weights_bytes: int
    kv_cells: int
    kv_bytes: int | None  # None when the header lacks the attention shape (then counted as 0)
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        """Weights + KV cache + compute allowance."""
        return self.weights_bytes + (self.kv_bytes or 0) + self.compute_bytes

    def describe(self) -> str:
        """`253 MB weights + 302 MB KV cache (16384 cells) + 89 MB compute` for error messages and logs."""
        kv = format_bytes(self.kv_bytes) if self.kv_bytes is not None else "unknown"
        return (
            f"{format_bytes(self.weights_bytes)} weights + {kv} KV cache ({self.kv_cells} cells) + "
            f"{format_bytes(self.compute_bytes)} compute"
        )


def _per_layer(value: int | tuple[int, ...], n_layer: int) -> tuple[int, ...] | None:
    if isinstance(value, tuple):
        return value if len(value) == n_layer else None
    return (value,) * n_layer


def kv_bytes_per_token(info: ModelInfo) -> int | None:
    """KV cache bytes one token takes across all layers, or None when the header does not say enough."""
    if not info.n_layer or info.n_head is None:
        return None
    heads = _per_layer(info.n_head, info.n_layer)
    kv_heads = _per_layer(info.n_head_kv if info.n_head_kv is not None else info.n_head, info.n_layer)
    if heads is None or kv_heads is None:
        return None
    total = 0
    for n_head, n_head_kv in zip(heads, kv_heads, strict=True):
        if n_head_kv == 0:
            continue  # a layer without attention (hybrid models) has no KV cache
        fallback_dim = info.n_embd // n_head if info.n_embd and n_head else None
        key_dim = info.key_length or fallback_dim
        value_dim = info.value_length or fallback_dim
        if key_dim is None or value_dim is None:
            return None
        total += n_head_kv * (key_dim + value_dim) * KV_BYTES_PER_VALUE
    return total


def planned_window(info: ModelInfo, config: LlamaConfig) -> int:
    """The window one request may use, as BatchContext sets it: n_ctx capped by the trained context (0: that)."""
    trained = info.context_length or 0
    return min(config.n_ctx, trained or config.n_ctx) if config.n_ctx > 0 else trained


def planned_kv_cells(info: ModelInfo, config: LlamaConfig) -> int:
    """The KV cells the worker will allocate: `kv_size(window)`."""
    window = planned_window(info, config)
    return config.kv_size(window) if window > 0 else 0


def total_memory_bytes() -> int | None:
    """The machine's physical memory (POSIX sysconf), or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def choose_kv_layout(
    info: ModelInfo, config: LlamaConfig, layout: str, ram_bytes: int | Literal["this machine"] | None = "this machine"
) -> LlamaConfig:
    """`config` with its KV layout decided: "split", "unified", or "auto" = split when the per-sequence caches
    (parallel x window cells) take at most SPLIT_KV_RAM_SHARE of the RAM and no unified pool size was set.

    Split is the fast layout (each sequence's attention covers its own cells only) and costs parallel x window
    cells; a unified pool is the fallback where that memory would crowd out models (an 8B model's 16 x 4,096
    split cache is 8 GB).
    """
    if ram_bytes == "this machine":
        ram_bytes = total_memory_bytes()
    if layout == "auto":
        per_token = kv_bytes_per_token(info)
        split_bytes = (per_token or 0) * replace(config, kv_split=True).kv_size(planned_window(info, config))
        fits = per_token is not None and ram_bytes is not None and split_bytes <= ram_bytes * SPLIT_KV_RAM_SHARE
        split = fits and config.kv_cells == 0
    else:
        split = layout == "split"
    return replace(config, kv_split=split)


def estimate_memory(info: ModelInfo, kv_cells: int) -> MemoryEstimate:
    """The estimated memory of `info` loaded with `kv_cells` KV cells."""
    per_token = kv_bytes_per_token(info)
    return MemoryEstimate(
        weights_bytes=info.size_bytes,
        kv_cells=kv_cells,
        kv_bytes=per_token * kv_cells if per_token is not None else None,
        compute_bytes=int(info.size_bytes * COMPUTE_FRACTION) + COMPUTE_BASE_BYTES,
    )


def release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, and RSS would not drop on unload)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
