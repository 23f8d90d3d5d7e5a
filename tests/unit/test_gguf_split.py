"""Split GGUF models in the models folder: one model per split (id without the part suffix, path of part 1,
size of all parts), its header's `split.count` and its parts checked, its settings file `<id>.toml`."""

from __future__ import annotations

from pathlib import Path

from pensieve.engine.gguf_split import model_id_of, split_name, split_parts
from pensieve.engine.registry import ModelRegistry
from pensieve.model_pull import remove_model
from support.fake_hub import tiny_gguf, tiny_split

NAMES = [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def _split(folder: Path, names: list[str] = NAMES) -> list[Path]:
    paths = []
    for name, content in zip(names, tiny_split(len(names), 4096), strict=True):
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


def test_names() -> None:
    split = split_name("sub/big-Q8_0-00002-of-00003.gguf")
    assert split is not None and (split.prefix, split.index, split.count) == ("big-Q8_0", 2, 3)
    assert split.names() == NAMES
    assert split_name("big-00004-of-00003.gguf") is None and split_name("big-Q8_0.gguf") is None
    assert model_id_of(Path(NAMES[0])) == "big-Q8_0" and model_id_of(Path("a.b.gguf")) == "a.b"
    assert split_parts(Path("/m") / NAMES[0]) == [Path("/m") / name for name in NAMES]


def test_a_split_is_one_model_at_its_first_part(tmp_path: Path) -> None:
    paths = _split(tmp_path)
    (tmp_path / "small.gguf").write_bytes(tiny_gguf(1024, "small"))
    (tmp_path / "big-Q8_0.toml").write_text('aliases = ["big"]\n', encoding="utf-8")
    registry = ModelRegistry(tmp_path)
    models = registry.scan()
    assert [(m.id, m.path.name, m.usable) for m in models] == [
        ("big-Q8_0", NAMES[0], True),
        ("small", "small.gguf", True),
    ]
    assert models[0].size_bytes == sum(path.stat().st_size for path in paths)
    assert models[0].settings.aliases == ("big",) and registry.canonical("big") == "big-Q8_0"
    assert registry.scan() == models  # cached: nothing changed


def test_a_missing_part_or_a_header_without_split_count_makes_it_unusable(tmp_path: Path) -> None:
    paths = _split(tmp_path)
    paths[1].unlink()
    (model,) = ModelRegistry(tmp_path).scan()
    assert not model.usable and "missing" in (model.error or "") and NAMES[1] in (model.error or "")
    for path in paths:
        path.unlink(missing_ok=True)
    (tmp_path / "fake-00001-of-00002.gguf").write_bytes(tiny_gguf(1024, "not split"))
    (tmp_path / "fake-00002-of-00002.gguf").write_bytes(tiny_gguf(1024, "not split"))
    (model,) = ModelRegistry(tmp_path).scan()
    assert model.id == "fake" and not model.usable and "split.count is None" in (model.error or "")


def test_a_single_file_wins_over_a_split_of_the_same_id(tmp_path: Path) -> None:
    _split(tmp_path)
    (tmp_path / "big-Q8_0.gguf").write_bytes(tiny_gguf(1024, "single"))
    (model,) = ModelRegistry(tmp_path).scan()
    assert model.path.name == "big-Q8_0.gguf" and model.name == "single"


def test_rm_removes_every_part(tmp_path: Path) -> None:
    _split(tmp_path)
    (tmp_path / "big-Q8_0.toml").write_text("", encoding="utf-8")
    for spelling in ("big-Q8_0", NAMES[1]):  # the id, or any part's name
        assert [path.name for path in remove_model(tmp_path, spelling)] == NAMES
        assert sorted(path.name for path in tmp_path.iterdir()) == ["big-Q8_0.toml"]
        _split(tmp_path)
