"""The local engine's sections: how models load and run, and the sampling defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from pensieve.diagnostics.cpu_features import available_cores
from pensieve.settings_sections.base import DEFAULT_MODEL_ID, RESTART, ChatFormat, KvLayout, Section
from pensieve.units import parse_byte_size, parse_duration_seconds


class EngineSettings(Section):
    """The local llama.cpp engine: which models, how they load, batch, queue and stay in memory."""

    title: ClassVar[str] = "Local engine"

    models_dir: Path = Field(
        Path("models"), description="Folder scanned for *.gguf model files.", json_schema_extra=RESTART
    )
    default_model: str = Field(DEFAULT_MODEL_ID, description="Model id (file stem) used when none is loaded.")
    preload_default_model: bool = Field(
        True, description="Load the default model at start-up.", json_schema_extra=RESTART
    )
    n_threads: int = Field(
        0, ge=0, le=512, description="Threads for generation; 0 = number of CPU cores.", json_schema_extra=RESTART
    )
    n_threads_batch: int = Field(
        0, ge=0, le=512, description="Threads for prompt processing; 0 = n_threads.", json_schema_extra=RESTART
    )
    n_ctx: int = Field(
        4096,
        ge=0,
        le=1_048_576,
        description="Context window in tokens; 0 = the model's trained context.",
        json_schema_extra=RESTART,
    )
    n_batch: int = Field(
        512, ge=16, le=65536, description="Prompt tokens evaluated per llama_decode call.", json_schema_extra=RESTART
    )
    parallel: int = Field(
        0,
        ge=0,
        le=256,
        description="Requests decoded together per model (continuous batching); 0 = auto (see docs/engine.md).",
    )
    kv_layout: KvLayout = Field(
        "auto",
        description="split: a KV cache of n_ctx cells per sequence (parallel x n_ctx in all; fastest); unified: "
        "one pool of kv_cache_tokens cells all sequences share (least memory; prompts get up to 1.7x slower once "
        "the pool is busy); auto: split when that fits in an eighth of the RAM and kv_cache_tokens is 0.",
        json_schema_extra=RESTART,
    )
    kv_cache_tokens: int = Field(
        0,
        ge=0,
        description="KV cache cells shared by a model's sequences in the unified layout; 0 = n_ctx x min(parallel, 4).",
    )
    max_queue: int = Field(
        64, ge=0, description="Requests that may wait per model beyond the running ones; more get HTTP 429."
    )
    chat_format: ChatFormat = Field(
        "auto",
        description="auto, template, gemma, chatml, phi3 or dialogue; auto picks per model (see docs/engine.md).",
        json_schema_extra=RESTART,
    )
    max_loaded_models: int = Field(
        2,
        ge=0,
        description="Models kept loaded at once; one more unloads the least recently used idle one. 0 = no limit.",
    )
    memory_limit: int = Field(
        0, ge=0, description="Estimated memory all loaded models may use, in bytes or e.g. 8GB, 512MiB; 0 = no limit."
    )
    cache_prompt: bool = Field(
        True,
        description="Reuse the cached KV of a shared prompt prefix (a request's cache_prompt wins); off = every "
        "prompt is computed in full (a reused prefix is the commonest reason a greedy answer changes; "
        "see docs/engine.md).",
    )
    speculative: bool = Field(
        True,
        description="Speculative decoding without a draft model: tokens found in the prompt and the answer so far "
        "are verified in one step (the same output up to near ties; faster rewriting, extraction, quoting). It "
        "stops drafting by itself where drafts are not accepted; a request's speculative: false turns it off.",
    )
    keep_alive: float = Field(
        300.0,
        ge=-1,
        description="Seconds an idle model stays loaded (or 5m, 1h); 0 = unload after each request, -1 = never.",
    )

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _parse_memory_limit(cls, value: Any) -> Any:
        # "8GB" and "512MiB" are what people write; the parser's message says which forms work.
        return parse_byte_size(value) if isinstance(value, str) else value

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _parse_keep_alive(cls, value: Any) -> Any:
        return parse_duration_seconds(value) if isinstance(value, str | int | float) else value

    @property
    def resolved_n_threads(self) -> int:
        """Generation threads: the setting, or every CPU core llama.cpp may use."""
        return self.n_threads or available_cores()

    @property
    def resolved_parallel(self) -> int:
        """Sequences per model: the setting, or 8 per core between 4 and 16.

        Batched decoding on a CPU gains little at a few sequences and most at 8-16 (memory bandwidth is
        shared); more sequences mostly add latency to each. The figures: bench/README.md, bench_batching.py.
        """
        return self.parallel or max(4, min(16, 8 * available_cores()))

    @property
    def resolved_n_threads_batch(self) -> int:
        """Prompt-processing threads: the setting, or the generation threads."""
        return self.n_threads_batch or self.resolved_n_threads


class SamplingSettings(Section):
    """Sampling defaults for requests that do not set their own (a request's own values win)."""

    title: ClassVar[str] = "Sampling"
    env_prefix: ClassVar[str] = "default_"

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, gt=0.0, le=10.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    max_tokens: int = Field(
        0, ge=0, description="Token limit when a request sets none; 0 = whatever fits in the context."
    )
