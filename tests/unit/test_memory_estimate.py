"""The memory estimate made from a GGUF header before loading: the real default model, and header variants."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.memory import (
    COMPUTE_BASE_BYTES,
    choose_kv_layout,
    estimate_memory,
    kv_bytes_per_token,
    planned_kv_cells,
)
from pensieve.engine.registry import ModelInfo, inspect_model_file

REAL_MODEL = Path(__file__).resolve().parents[2] / "models" / "gemma-3-270m-q4_k_m.gguf"


def config(n_ctx: int, *, parallel: int = 16, kv_cells: int = 0) -> LlamaConfig:
    return LlamaConfig(n_ctx=n_ctx, n_batch=512, n_threads=2, n_threads_batch=2, n_parallel=parallel, kv_cells=kv_cells)


@pytest.fixture(scope="module")
def gemma() -> ModelInfo:
    if not REAL_MODEL.is_file():
        pytest.skip(f"{REAL_MODEL} is not installed")
    return inspect_model_file(REAL_MODEL)


def test_the_default_models_header_gives_its_attention_shape(gemma: ModelInfo) -> None:
    assert (gemma.n_layer, gemma.n_head, gemma.n_head_kv) == (18, 4, 1)
    assert (gemma.key_length, gemma.value_length, gemma.n_embd) == (256, 256, 640)
    assert gemma.context_length == 32768


def test_the_default_models_kv_cache_matches_llama_cpps_own_figure(gemma: ModelInfo) -> None:
    # 18 layers x 1 KV head x (256 + 256) x 2 bytes.
    assert kv_bytes_per_token(gemma) == 18_432
    cells = planned_kv_cells(gemma, config(4096))  # 4 windows of 4096 (parallel 16 is capped at 4)
    assert cells == 16_384
    estimate = estimate_memory(gemma, cells)
    # llama.cpp reports 48 MiB (3 global layers) + 240 MiB (15 sliding-window layers, full-size cache).
    assert estimate.kv_bytes == 288 * 1024 * 1024
    assert estimate.weights_bytes == REAL_MODEL.stat().st_size
    assert estimate.compute_bytes == estimate.weights_bytes // 10 + COMPUTE_BASE_BYTES
    assert estimate.total_bytes == estimate.weights_bytes + estimate.kv_bytes + estimate.compute_bytes
    # The worker measured ~659 MB RSS with this configuration: the estimate is within 10%.
    assert 600e6 < estimate.total_bytes < 700e6
    assert "KV cache (16384 cells)" in estimate.describe()


def test_the_window_is_capped_by_the_trained_context(gemma: ModelInfo) -> None:
    assert planned_kv_cells(gemma, config(100_000, parallel=1)) == 32_768
    assert planned_kv_cells(gemma, config(0, parallel=2)) == 2 * 32_768
    assert planned_kv_cells(gemma, config(2048, kv_cells=5000)) == 5000


def shape(**fields: object) -> ModelInfo:
    return replace(ModelInfo(id="m", path=Path("m.gguf"), size_bytes=1_000_000_000, modified_ns=0), **fields)  # type: ignore[arg-type]


def test_head_dim_falls_back_to_embedding_over_heads() -> None:
    # Llama-style header without key_length: head_dim = 4096 / 32 = 128; 8 KV heads (GQA).
    info = shape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8)
    assert kv_bytes_per_token(info) == 32 * 8 * (128 + 128) * 2


def test_kv_heads_default_to_heads_and_may_vary_per_layer() -> None:
    assert kv_bytes_per_token(shape(n_layer=2, n_embd=64, n_head=4)) == 2 * 4 * 32 * 2
    per_layer = shape(n_layer=3, n_embd=64, n_head=(4, 4, 4), n_head_kv=(2, 0, 1))
    assert kv_bytes_per_token(per_layer) == (2 + 0 + 1) * (16 + 16) * 2


def test_an_incomplete_header_gives_no_kv_figure_but_still_an_estimate() -> None:
    info = shape(n_layer=None)
    assert kv_bytes_per_token(info) is None
    estimate = estimate_memory(info, 4096)
    assert estimate.kv_bytes is None
    assert estimate.total_bytes == 1_000_000_000 + 100_000_000 + COMPUTE_BASE_BYTES
    assert "unknown KV cache" in estimate.describe()
    assert kv_bytes_per_token(shape(n_layer=2, n_head=(4, 4, 4))) is None  # per-layer list of the wrong length


def test_auto_splits_the_kv_cache_where_a_window_per_sequence_fits_an_eighth_of_the_ram(gemma: ModelInfo) -> None:
    gib = 1024**3
    # The default model's 16 x 4,096 split cells are 1.2 GB: split on 24 GiB, unified on 8 GiB.
    split = choose_kv_layout(gemma, config(4096), "auto", 24 * gib)
    assert split.kv_split and planned_kv_cells(gemma, split) == 16 * 4096
    assert estimate_memory(gemma, planned_kv_cells(gemma, split)).kv_bytes == 16 * 4096 * 18_432
    assert not choose_kv_layout(gemma, config(4096), "auto", 8 * gib).kv_split
    assert not choose_kv_layout(gemma, config(4096), "auto", None).kv_split  # RAM unknown: the small layout
    assert not choose_kv_layout(gemma, config(4096, kv_cells=8192), "auto", 24 * gib).kv_split  # a pool was set
    # An 8B-class model (32 layers x 8 KV heads x 128): 128 KiB a cell, 8 GiB split: unified even on 24 GiB.
    big = shape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, context_length=131_072)
    assert not choose_kv_layout(big, config(4096), "auto", 24 * gib).kv_split
    # The explicit choices win.
    assert choose_kv_layout(big, config(4096), "split", 8 * gib).kv_split
    assert not choose_kv_layout(gemma, config(4096), "unified", 24 * gib).kv_split
    assert planned_kv_cells(gemma, choose_kv_layout(gemma, config(4096), "unified", None)) == 16_384
