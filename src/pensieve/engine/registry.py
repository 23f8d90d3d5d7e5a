"""The model registry: which GGUF files are installed, and what their headers say.

Model ids are file stems (`models/gemma-3-270m-q4_k_m.gguf` -> `gemma-3-270m-q4_k_m`); a model split in
parts (`m-00001-of-00003.gguf`, ...) is one model `m` whose path is its first part (engine/gguf_split.py). Headers are
re-read only when a file's size or modification time changes, so rescanning on every listing is cheap
and a file dropped into the folder is served without a restart. An optional `models/<id>.toml` gives the
model its own settings and aliases (`model_config.py`); it is re-read when it changes, and a bad one makes
the model unusable with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pensieve.engine.gguf_metadata import GGUFFormatError, GGUFMetadata, read_gguf_metadata
from pensieve.engine.gguf_split import SPLIT_COUNT_KEY, is_later_part, model_id_of, split_parts, split_problem
from pensieve.engine.model_config import (
    NO_SETTINGS,
    ConfigStamp,
    ModelConfigError,
    ModelSettings,
    config_stamp,
    read_model_settings,
)

logger = logging.getLogger(__name__)


def normalise_model_id(model_id: str) -> str:
    """Accept "name.gguf" and surrounding spaces as well as the bare id."""
    cleaned = model_id.strip()
    return cleaned.removesuffix(".gguf") if cleaned.endswith(".gguf") else cleaned


@dataclass(frozen=True)
class ModelInfo:
    """One installed model file; `error` says why it cannot be used, if it cannot."""

    id: str
    path: Path
    size_bytes: int
    modified_ns: int
    architecture: str | None = None
    name: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    parameter_count: int | None = None
    chat_template: str | None = None
    # Attention shape from the header, for the KV cache estimate (see engine/memory.py); None when absent.
    # Head counts are per layer (a tuple) in the few models whose layers differ.
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | tuple[int, ...] | None = None
    n_head_kv: int | tuple[int, ...] | None = None
    key_length: int | None = None
    value_length: int | None = None
    error: str | None = None
    settings: ModelSettings = NO_SETTINGS  # from models/<id>.toml
    config: ConfigStamp | None = None  # that file's (size, mtime) when it was read

    @property
    def usable(self) -> bool:
        """True when the header parsed and the file looks complete."""
        return self.error is None

    @property
    def version_ns(self) -> int:
        """The file's mtime, or a value that also changes with its TOML settings (load failures are per version)."""
        if self.config is None:
            return self.modified_ns
        return hash((self.modified_ns, self.config.size, self.config.modified_ns))

    @property
    def has_chat_template(self) -> bool:
        """True when the file carries its own chat template."""
        return self.chat_template is not None


def _describe(path: Path, stat_size: int, stat_mtime: int, metadata: GGUFMetadata) -> ModelInfo:
    name = metadata.values.get("general.name")
    return ModelInfo(
        id=model_id_of(path),
        path=path,
        size_bytes=stat_size,
        modified_ns=stat_mtime,
        architecture=metadata.architecture,
        name=name if isinstance(name, str) else None,
        quantization=metadata.quantization,
        context_length=metadata.context_length,
        parameter_count=metadata.parameter_count,
        chat_template=metadata.chat_template,
        n_layer=metadata.arch_int("block_count"),
        n_embd=metadata.arch_int("embedding_length"),
        n_head=metadata.arch_ints("attention.head_count"),
        n_head_kv=metadata.arch_ints("attention.head_count_kv"),
        key_length=metadata.arch_int("attention.key_length"),
        value_length=metadata.arch_int("attention.value_length"),
    )


def model_stat(path: Path) -> tuple[int, int]:
    """A model's (size, mtime): its file's, or for a split model the parts' total size and latest mtime."""
    size, modified = 0, 0
    for part in split_parts(path):
        try:
            stat = part.stat()
        except OSError:
            continue  # a missing part is reported by inspect_model_file
        size, modified = size + stat.st_size, max(modified, stat.st_mtime_ns)
    return size, modified


def inspect_model_file(path: Path) -> ModelInfo:
    """Read one file's header (and its TOML settings) into a ModelInfo; a bad one yields an entry with `error`.

    For a split model's first part the header is read from that part, and every part must be there."""
    size, modified = model_stat(path)
    stamp = config_stamp(path)
    model_id = model_id_of(path)
    try:
        settings = read_model_settings(path)
    except ModelConfigError as exc:
        logger.warning("model settings of %s are invalid: %s", path, exc)
        error = f"its settings file {exc}"
        return ModelInfo(model_id, path, size, modified, error=error, config=stamp)
    try:
        metadata = read_gguf_metadata(path)
        problem = split_problem(path, metadata.values.get(SPLIT_COUNT_KEY))
        if problem is not None:
            raise GGUFFormatError(problem)
        info = _describe(path, size, modified, metadata)
        return replace(info, settings=settings, config=stamp)
    except (GGUFFormatError, OSError, ValueError) as exc:
        logger.warning("model file %s is unusable: %s", path, exc)
        return ModelInfo(id=model_id, path=path, size_bytes=size, modified_ns=modified, error=str(exc), config=stamp)
    except Exception as exc:  # a file in models/ may be hostile: a reader bug must not break the listing
        logger.exception("model file %s could not be read", path)
        error = f"its header could not be read ({type(exc).__name__}: {exc})"
        return ModelInfo(model_id, path, size, modified, error=error, config=stamp)


class ModelRegistry:
    """Scans a folder for `*.gguf` files and caches their parsed headers by (size, mtime)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._cache: dict[Path, ModelInfo] = {}
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[ModelInfo]:
        """Every model file in the folder, sorted by id; unreadable files are included with `error`."""
        if not self.models_dir.is_dir():
            return []
        found: dict[Path, ModelInfo] = {}
        for path in sorted(self.models_dir.glob("*.gguf")):
            if not path.is_file() or is_later_part(path):  # parts 2..N belong to part 1
                continue
            size, modified = model_stat(path)
            if size == 0 and modified == 0:
                continue  # removed while scanning
            cached = self._cache.get(path)
            if (
                cached
                and cached.size_bytes == size
                and cached.modified_ns == modified
                and cached.config == config_stamp(path)
            ):
                found[path] = cached
            else:
                found[path] = inspect_model_file(path)
        models = _one_per_id(found.values())
        aliases = _alias_map(models)
        with self._lock:
            self._cache, self._aliases = found, aliases
        return models

    def get(self, model_id: str) -> ModelInfo | None:
        """The model with this id (or alias) after a fresh scan, or None when no such file exists."""
        models = self.scan()
        wanted = self.canonical(model_id)
        return next((info for info in models if info.id == wanted), None)

    def canonical(self, model_id: str) -> str:
        """The model id an alias stands for (as of the last scan); any other id unchanged."""
        return self._aliases.get(model_id, model_id)

    def aliases(self) -> dict[str, str]:
        """Alias -> model id, as of the last scan."""
        return dict(self._aliases)


def _one_per_id(models: Iterable[ModelInfo]) -> list[ModelInfo]:
    """The models sorted by id, one per id: `m.gguf` wins over a split `m-00001-of-0000N.gguf` (same id)."""
    chosen: dict[str, ModelInfo] = {}
    for info in sorted(models, key=lambda info: (info.id, info.path.name != f"{info.id}.gguf")):
        if info.id in chosen:
            logger.warning(
                "model file %s is ignored: %s already has the id %s", info.path, chosen[info.id].path, info.id
            )
            continue
        chosen[info.id] = info
    return list(chosen.values())


def _alias_map(models: list[ModelInfo]) -> dict[str, str]:
    """The usable models' aliases; a model's own id wins over an alias, the first model (by id) over later ones."""
    ids = {info.id for info in models}
    aliases: dict[str, str] = {}
    for info in models:
        if not info.usable:
            continue
        for alias in info.settings.aliases:
            owner = aliases.get(alias)
            if alias in ids or (owner is not None and owner != info.id):
                logger.warning("alias %s of model %s is ignored: %s already names a model", alias, info.id, alias)
                continue
            aliases[alias] = info.id
    return aliases
