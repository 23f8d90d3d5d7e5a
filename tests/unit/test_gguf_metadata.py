"""The GGUF header reader: real files written with the gguf package, plus truncated and foreign ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from pensieve.engine.gguf_metadata import GGUFFormatError, SkippedArray, read_gguf_metadata
from pensieve.engine.registry import ModelRegistry


def write_model(path: Path, *, template: str | None = None, vocab: int = 100) -> None:
    writer = GGUFWriter(str(path), arch="llama")
    writer.add_name("Tiny Test")
    writer.add_context_length(2048)
    writer.add_file_type(15)
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    if template:
        writer.add_chat_template(template)
    writer.add_tensor("weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_reads_architecture_context_template_and_quantization(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_model(path, template="{{ messages }}")
    meta = read_gguf_metadata(path)
    assert meta.architecture == "llama"
    assert meta.context_length == 2048
    assert meta.chat_template == "{{ messages }}"
    assert meta.quantization == "Q4_K_M"
    assert meta.parameter_count == 32
    assert meta.values["general.name"] == "Tiny Test"


def test_long_arrays_are_skipped_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "vocab.gguf"
    write_model(path, vocab=5000)
    assert read_gguf_metadata(path).values["tokenizer.ggml.tokens"] == SkippedArray(5000)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "full.gguf"
    write_model(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(GGUFFormatError, match="truncated"):
        read_gguf_metadata(cut)


def test_file_cut_inside_the_header_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "full.gguf"
    write_model(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:60])
    with pytest.raises(GGUFFormatError):
        read_gguf_metadata(cut)


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04" + b"\x00" * 100, b"GGUF" + b"\xff" * 60])
def test_foreign_or_garbage_files_are_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFFormatError):
        read_gguf_metadata(path)


def test_registry_lists_good_and_bad_files_and_notices_changes(tmp_path: Path) -> None:
    write_model(tmp_path / "good.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"not a model")
    (tmp_path / "notes.txt").write_text("ignored")
    registry = ModelRegistry(tmp_path)
    models = {m.id: m for m in registry.scan()}
    assert set(models) == {"good", "bad"}
    assert models["good"].usable and models["good"].architecture == "llama"
    assert not models["bad"].usable and "not a GGUF file" in (models["bad"].error or "")
    write_model(tmp_path / "bad.gguf", template="{{ x }}")
    fixed = registry.get("bad")
    assert fixed is not None and fixed.usable and fixed.has_chat_template


def test_missing_models_folder_is_empty_not_an_error(tmp_path: Path) -> None:
    assert ModelRegistry(tmp_path / "nowhere").scan() == []
