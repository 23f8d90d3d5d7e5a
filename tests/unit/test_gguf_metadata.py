"""The GGUF header reader: real files written with the gguf package, truncated and foreign ones, and the
hostile corpus (tests/support/hostile_gguf.py): each refused with GGUFFormatError saying what is wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from pensieve.engine import registry as registry_module
from pensieve.engine.chat_template import ChatTemplateError, render_jinja_template
from pensieve.engine.gguf_metadata import MAX_ARRAY_DEPTH, GGUFFormatError, SkippedArray, read_gguf_metadata
from pensieve.engine.registry import ModelRegistry
from pensieve.engine_api import ChatMessage
from support.hostile_gguf import (
    BASE_KVS,
    HOSTILE,
    WEIGHT,
    WEIGHT_DATA,
    gguf_file,
    gguf_string,
    template_payloads,
    valid_tiny,
    write_hostile_corpus,
    write_with_chat_template,
)


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


# --- The hostile corpus (tests/support/hostile_gguf.py) ---------------------------------------------


@pytest.mark.parametrize("model_id", sorted(HOSTILE))
def test_every_hostile_file_is_refused_with_a_clear_format_error(tmp_path: Path, model_id: str) -> None:
    problems = write_hostile_corpus(tmp_path)[model_id]
    with pytest.raises(GGUFFormatError) as caught:
        read_gguf_metadata(tmp_path / f"{model_id}.gguf")
    assert any(problem in str(caught.value) for problem in problems), (model_id, str(caught.value))


def test_the_registry_lists_the_whole_corpus_as_unusable_with_reasons(tmp_path: Path) -> None:
    expected = write_hostile_corpus(tmp_path)
    (tmp_path / "sound.gguf").write_bytes(valid_tiny())
    models = {info.id: info for info in ModelRegistry(tmp_path).scan()}
    assert set(models) == {*expected, "sound"}
    assert models["sound"].usable
    for model_id, problems in expected.items():
        assert not models[model_id].usable
        assert any(problem in (models[model_id].error or "") for problem in problems), models[model_id]


def test_counts_are_checked_against_the_bytes_left_before_reading_by_them(tmp_path: Path) -> None:
    path = tmp_path / "unbacked.gguf"
    path.write_bytes(gguf_file(BASE_KVS, [], kv_count=999_999))
    with pytest.raises(GGUFFormatError, match=r"claims 999999 key/value pairs at offset 24, more than the \d+ bytes"):
        read_gguf_metadata(path)


def test_a_little_array_nesting_is_read_but_not_more(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", 0, 2) + b"\x01\x02"  # [1, 2] as uint8
    nested = gguf_string("pairs") + struct.pack("<IIQ", 9, 9, 1) + inner  # [[1, 2]]
    path = tmp_path / "nested.gguf"
    path.write_bytes(gguf_file([*BASE_KVS, nested], [WEIGHT], WEIGHT_DATA))
    assert read_gguf_metadata(path).values["pairs"] == [[1, 2]]
    deeper = gguf_string("deep") + struct.pack("<IIQIQ", 9, 9, 1, 9, 1) + inner  # [[[1, 2]]]
    path.write_bytes(gguf_file([*BASE_KVS, deeper], [WEIGHT], WEIGHT_DATA))
    with pytest.raises(GGUFFormatError, match=f"nested more than {MAX_ARRAY_DEPTH} deep"):
        read_gguf_metadata(path)


def test_a_reader_bug_makes_the_file_unusable_not_the_listing_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "odd.gguf").write_bytes(valid_tiny())

    def broken(path: Path) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(registry_module, "read_gguf_metadata", broken)
    [info] = ModelRegistry(tmp_path).scan()
    assert not info.usable and "RecursionError" in (info.error or "")


@pytest.mark.parametrize("name", ["template-globals", "template-subclasses"])
def test_a_template_payload_is_data_to_the_reader_and_never_runs_in_the_sandbox(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    template = template_payloads(marker)[name]
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(valid_tiny(template))
    info = ModelRegistry(tmp_path).get(name)
    assert info is not None and info.usable and info.chat_template == template
    with pytest.raises(ChatTemplateError, match="failed to render"):
        render_jinja_template(template, [ChatMessage(role="user", content="hi")], bos_token="<s>", eos_token="</s>")
    assert not marker.exists()


def test_a_real_model_copy_gets_a_new_template_and_keeps_its_tensors(tmp_path: Path) -> None:
    source = tmp_path / "source.gguf"
    write_model(source, template="{{ old }}", vocab=5000)
    target = tmp_path / "target.gguf"
    write_with_chat_template(source, target, "{{ new }}")
    before, after = read_gguf_metadata(source), read_gguf_metadata(target)
    assert after.chat_template == "{{ new }}"
    assert {k: v for k, v in after.values.items() if k != "tokenizer.chat_template"} == {
        k: v for k, v in before.values.items() if k != "tokenizer.chat_template"
    }
    assert (after.parameter_count, after.tensor_types) == (before.parameter_count, before.tensor_types)
    assert target.read_bytes().endswith(np.ones((4, 8), dtype=np.float32).tobytes())
