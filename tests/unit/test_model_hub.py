"""Which hub file a pull spec means, and per-model TOML settings (models/<id>.toml) with aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from pensieve.engine.model_config import llama_config, model_engine_settings, read_model_settings
from pensieve.engine.registry import ModelRegistry
from pensieve.model_hub import HubError, HubFile, HubNotFoundError, choose_file, parse_spec, quant_tag
from pensieve.settings_sections import EngineSettings
from support.fake_hub import tiny_gguf


def _files(*names: str) -> list[HubFile]:
    return [HubFile("org/m-GGUF", name, 10, "c" * 40, "0" * 64) for name in names]


def _pick(selector: str | None, *names: str) -> str:
    return choose_file(_files(*names), selector, "org/m-GGUF").filename


def test_parse_spec() -> None:
    assert parse_spec("org/m-GGUF") == parse_spec("  org/m-GGUF  ")
    assert parse_spec("org/m-GGUF:Q4_K_M").selector == "Q4_K_M"
    assert parse_spec("hf.co/org/m-GGUF:x.gguf").repo == "org/m-GGUF"
    assert parse_spec("org/m-GGUF", "Q8_0").selector == "Q8_0"
    for bad in ("nothing", "a/b/c", "/x", "org/:Q4"):
        with pytest.raises(HubError, match="owner/name"):
            parse_spec(bad)


def test_the_only_gguf_or_q4_k_m_is_the_default() -> None:
    assert _pick(None, "README.md", "m-Q8_0.gguf") == "m-Q8_0.gguf"
    assert _pick(None, "m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "mmproj-m-f16.gguf") == "m-Q4_K_M.gguf"
    assert _pick(None, "m.gguf", "mmproj-m-f16.gguf") == "m.gguf"  # a vision projector is never the model
    with pytest.raises(HubError, match=r"Several GGUF files.*m-Q8_0\.gguf, m-Q6_K\.gguf") as caught:
        _pick(None, "m-Q8_0.gguf", "m-Q6_K.gguf")
    assert caught.value.code == "ambiguous_model_file"
    with pytest.raises(HubNotFoundError, match=r"no \.gguf file"):
        _pick(None, "README.md", "model.safetensors")


def test_a_quant_tag_matches_a_whole_word_in_any_case() -> None:
    names = ("m-Q4_K_M.gguf", "m-Q4_K.gguf", "m.IQ4_XS.gguf", "m_q8_0.gguf")
    assert _pick("q4_k_m", *names) == "m-Q4_K_M.gguf"
    assert _pick("Q4_K", *names) == "m-Q4_K.gguf"
    assert _pick("iq4_xs", *names) == "m.IQ4_XS.gguf"
    assert _pick("Q8_0", *names) == "m_q8_0.gguf"
    with pytest.raises(HubNotFoundError, match=r"no GGUF file for quantization Q5_K_M\. Its GGUF files: m-Q4_K_M"):
        _pick("Q5_K_M", *names)
    assert quant_tag("m-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_tag("gemma-3-270m-it-bf16.gguf") == "BF16"
    assert quant_tag("model.gguf") is None


def test_a_file_name_picks_that_file() -> None:
    assert _pick("M-Q8_0.GGUF", "m-Q4_K_M.gguf", "m-Q8_0.gguf") == "m-Q8_0.gguf"
    assert _pick("m-Q8_0.gguf", "sub/m-Q8_0.gguf") == "sub/m-Q8_0.gguf"
    with pytest.raises(HubNotFoundError, match=r"no file other\.gguf"):
        _pick("other.gguf", "m-Q8_0.gguf")


def test_a_split_model_is_one_candidate_with_all_its_parts() -> None:
    parts = [f"m-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    others = ("m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf")
    for selector in ("Q8_0", parts[1], parts[2]):  # a tag, or any part's name, means the whole model
        chosen = choose_file(_files(*reversed(parts), *others), selector, "org/m-GGUF")
        assert [f.filename for f in chosen.files] == parts
        assert (chosen.model_id, chosen.total_size) == ("m-Q8_0", 30)
    assert choose_file(_files(*parts, *others), None, "org/m-GGUF").files[1].filename == others[1]  # Q4_K_M
    assert _pick(None, *parts, "m-Q4_K_M.gguf") == "m-Q4_K_M.gguf"  # a single file is preferred
    with pytest.raises(HubError, match=r"split in 3 files.*lacks m-Q8_0-00002-of-00003\.gguf") as caught:
        _pick("Q8_0", parts[0], parts[2])
    assert caught.value.code == "incomplete_split_gguf"


def _model(folder: Path, model_id: str, toml: str | None = None) -> Path:
    path = folder / f"{model_id}.gguf"
    path.write_bytes(tiny_gguf(1024, model_id))
    if toml is not None:
        path.with_suffix(".toml").write_text(toml, encoding="utf-8")
    return path


def test_model_settings_apply_over_the_global_ones(tmp_path: Path) -> None:
    path = _model(tmp_path, "m", 'n_ctx = 1024\nchat_format = "chatml"\nparallel = 2\naliases = ["chat", "m:small"]\n')
    settings = read_model_settings(path)
    assert settings.overrides() == {"n_ctx": 1024, "chat_format": "chatml", "parallel": 2}
    engine = model_engine_settings(EngineSettings(n_ctx=4096, parallel=8, n_batch=256), settings)
    assert (engine.n_ctx, engine.chat_format, engine.parallel, engine.n_batch) == (1024, "chatml", 2, 256)
    assert llama_config(engine).n_parallel == 2
    registry = ModelRegistry(tmp_path)
    assert registry.get("chat") is not None and registry.canonical("m:small") == "m"
    assert registry.get("m") == registry.get("chat")


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ("n_ctx = ", "m.toml is not valid TOML"),
        ("context = 5", "m.toml: context: unknown key"),
        ("n_ctx = -1", "m.toml: n_ctx: Input should be greater than or equal to 0"),
        ('chat_format = "llama9"', "m.toml: chat_format: Input should be"),
        ('aliases = ["cloud/x"]', "'cloud/x' cannot be an alias"),
        ('aliases = ["auto"]', "'auto' cannot be an alias"),
    ],
)
def test_a_bad_settings_file_makes_its_model_unusable(tmp_path: Path, toml: str, reason: str) -> None:
    _model(tmp_path, "m", toml)
    _model(tmp_path, "other")
    registry = ModelRegistry(tmp_path)
    info = registry.get("m")
    assert info is not None and not info.usable
    assert info.error is not None and info.error.startswith("its settings file") and reason in info.error
    assert registry.get("other") is not None and registry.get("other").usable  # type: ignore[union-attr]
    (tmp_path / "m.toml").write_text("n_ctx = 512\n", encoding="utf-8")  # fixed: usable at the next scan
    fixed = registry.get("m")
    assert fixed is not None and fixed.usable and fixed.settings.n_ctx == 512


def test_a_model_id_wins_over_an_alias_and_the_first_model_over_a_later_one(tmp_path: Path) -> None:
    _model(tmp_path, "a", 'aliases = ["b", "shared"]')
    _model(tmp_path, "b")
    _model(tmp_path, "c", 'aliases = ["shared", "own"]')
    registry = ModelRegistry(tmp_path)
    registry.scan()
    assert registry.aliases() == {"shared": "a", "own": "c"}
    assert registry.canonical("b") == "b"
