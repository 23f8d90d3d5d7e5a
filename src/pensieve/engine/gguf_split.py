"""Split GGUF models: one model stored as `<name>-00001-of-00003.gguf`, `<name>-00002-of-00003.gguf`, ...

This is the naming llama.cpp's `llama-gguf-split` writes and the hubs use. llama.cpp loads such a model when
given the first part's path, finding the other parts next to it by these names; the first part's header
says how many parts there are (`split.count`). Pensieve therefore treats the parts as ONE model: its id is
`<name>` (the name without the part suffix), its path the first part's, its size the parts' sum; parts
2..N never appear as models of their own, and removing the model removes every part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
SPLIT_COUNT_KEY = "split.count"


@dataclass(frozen=True)
class SplitName:
    """What a part's file name says: the model's name, which part this is (from 1) and how many there are."""

    prefix: str
    index: int
    count: int

    def part(self, index: int) -> str:
        """The file name of part `index` of the same model."""
        return f"{self.prefix}-{index:05d}-of-{self.count:05d}.gguf"

    def names(self) -> list[str]:
        """The file names of every part, first to last."""
        return [self.part(index) for index in range(1, self.count + 1)]


def split_name(filename: str) -> SplitName | None:
    """The split a file name belongs to (a plausible one: part 1..N of N >= 1), or None for a single file."""
    match = _SPLIT.match(filename.rsplit("/", 1)[-1])
    if match is None:
        return None
    index, count = int(match["index"]), int(match["count"])
    if not 1 <= index <= count:
        return None
    return SplitName(match["prefix"], index, count)


def model_id_of(path: Path) -> str:
    """The model id of a file in the models folder: its stem, without the part suffix for a split model."""
    split = split_name(path.name)
    return split.prefix if split is not None else path.stem


def is_later_part(path: Path) -> bool:
    """True for parts 2..N of a split model: they belong to part 1 and are not models of their own."""
    split = split_name(path.name)
    return split is not None and split.index > 1


def is_part_of(path: Path, model_id: str) -> bool:
    """True when `path` is a part (any) of the split model `model_id`."""
    split = split_name(path.name)
    return split is not None and split.prefix == model_id


def split_parts(first: Path) -> list[Path]:
    """Every part's path, first to last, for a split model's first part; `[first]` for a single file."""
    split = split_name(first.name)
    if split is None:
        return [first]
    return [first.with_name(name) for name in split.names()]


def split_problem(first: Path, declared: object) -> str | None:
    """Why the split model whose first part is `first` cannot load (None when it can): a part missing, or a
    header `split.count` (`declared`, None when absent) that disagrees with the file names."""
    split = split_name(first.name)
    if split is None:
        return None
    if type(declared) is not int or declared != split.count:
        return (
            f"its name says part 1 of {split.count}, but its header's {SPLIT_COUNT_KEY} is {declared!r}: "
            "not a split GGUF as llama.cpp writes them"
        )
    missing = [path.name for path in split_parts(first) if not path.is_file()]
    if missing:
        return f"part(s) of this split model are missing from the models folder: {', '.join(missing)}"
    return None
