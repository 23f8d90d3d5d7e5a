"""Per-model settings: an optional `models/<id>.toml` beside `models/<id>.gguf`.

```toml
n_ctx = 8192              # context window in tokens (PENSIEVE_N_CTX for this model; 0 = its trained context)
chat_format = "chatml"    # auto, template, gemma, chatml, phi3 or dialogue (PENSIEVE_CHAT_FORMAT)
parallel = 4              # sequences decoded together (PENSIEVE_PARALLEL; 0 = auto)
kv_cache_tokens = 16384   # KV cache cells (PENSIEVE_KV_CACHE_TOKENS; 0 = n_ctx x min(parallel, 4))
aliases = ["chat", "small"]  # other ids the model answers to, in /v1/models and in requests
```

Each key given wins over the global setting for that model alone, from its next load. The file is checked
like the settings are (unknown keys, wrong types and out-of-range values are refused): a bad file makes its
model unusable with the reason (`/api/models`, `pensieve models list`), as a corrupt GGUF does, and never
stops the server. Aliases must not contain `/` (cloud ids do), nor be `auto`; a model file's own id wins
over another model's alias.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pensieve.engine.gguf_split import model_id_of
from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.settings_sections import EngineSettings
from pensieve.settings_sections.base import ChatFormat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_SUFFIX = ".toml"
MAX_CONFIG_BYTES = 64 * 1024
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")


class ModelConfigError(ValueError):
    """A model's TOML file is unreadable or invalid; the message names the file, the key and the problem."""


class ModelSettings(BaseModel):
    """The keys a model's TOML file may set; each None falls back to the global setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ctx: int | None = Field(default=None, ge=0, le=1_048_576)
    chat_format: ChatFormat | None = None
    parallel: int | None = Field(default=None, ge=0, le=256)
    kv_cache_tokens: int | None = Field(default=None, ge=0)
    aliases: tuple[str, ...] = ()

    @field_validator("aliases")
    @classmethod
    def _check_aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for alias in value:
            if alias.lower() == "auto" or not _ALIAS.match(alias):
                raise ValueError(
                    f"'{alias}' cannot be an alias: use letters, digits and . _ : + - (no '/', not 'auto')"
                )
        return tuple(dict.fromkeys(value))

    def overrides(self) -> dict[str, Any]:
        """The engine settings this file sets, by EngineSettings field name."""
        return {key: value for key, value in self.model_dump(exclude={"aliases"}).items() if value is not None}


NO_SETTINGS = ModelSettings()


@dataclass(frozen=True)
class ConfigStamp:
    """What identifies a config file's content cheaply: (size, mtime), or None when there is no file."""

    size: int
    modified_ns: int


def config_path(model_path: Path) -> Path:
    """`models/<id>.toml` for `models/<id>.gguf` (and for a split model's `models/<id>-00001-of-0000N.gguf`)."""
    return model_path.with_name(model_id_of(model_path) + CONFIG_SUFFIX)


def config_stamp(model_path: Path) -> ConfigStamp | None:
    """The (size, mtime) of the model's TOML file, or None when it has none."""
    try:
        stat = config_path(model_path).stat()
    except OSError:
        return None
    return ConfigStamp(stat.st_size, stat.st_mtime_ns)


def _problem(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(file)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


def read_model_settings(model_path: Path) -> ModelSettings:
    """The model's TOML settings (NO_SETTINGS without a file); ModelConfigError says what is wrong."""
    path = config_path(model_path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelConfigError(f"{path.name} is larger than {MAX_CONFIG_BYTES // 1024} KB")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NO_SETTINGS
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{path.name} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path.name} is not valid TOML: {exc}") from exc
    try:
        return ModelSettings.model_validate(data)
    except ValidationError as exc:
        raise ModelConfigError(f"{path.name}: {_problem(exc)}") from exc


def model_engine_settings(settings: EngineSettings, model: ModelSettings) -> EngineSettings:
    """The global engine settings with the model's own values over them."""
    overrides = model.overrides()
    return settings.model_copy(update=overrides) if overrides else settings


def llama_config(settings: EngineSettings) -> LlamaConfig:
    """How the settings say models are loaded (context, batch, threads, parallel sequences, KV cells)."""
    return LlamaConfig(
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.resolved_n_threads,
        n_threads_batch=settings.resolved_n_threads_batch,
        n_parallel=settings.resolved_parallel,
        kv_cells=settings.kv_cache_tokens,
    )
