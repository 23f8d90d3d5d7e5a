"""Read and validate a GGUF file's header without loading its weights.

`gguf.GGUFReader` parses every tokenizer entry into numpy views, which takes many seconds for Gemma 3's
262,144-token vocabulary (bench/README.md has the figure). Listing models must be instant, so this
reader walks the header with `struct` over an mmap, keeps scalar values and short arrays, and skips long
arrays. It uses the `gguf` package's own constants for value types, tensor types and block sizes, and checks that every
tensor's data lies inside the file, which catches truncated downloads before llama.cpp sees them.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType, LlamaFileType

# Arrays longer than this are skipped (tokenizer vocabularies); their length is still recorded.
MAX_KEPT_ARRAY = 64
# Sanity limits: a header claiming more than this is corrupt, not large.
MAX_KV_COUNT = 1_000_000
MAX_TENSOR_COUNT = 10_000_000
MAX_STRING_BYTES = 64 * 1024 * 1024
DEFAULT_ALIGNMENT = 32

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
    GGUFValueType.BOOL: "?",
}


class GGUFFormatError(ValueError):
    """The file is not a GGUF file, or its header is inconsistent (truncated or corrupt)."""


@dataclass(frozen=True)
class SkippedArray:
    """Placeholder for a long array whose elements were not read."""

    length: int


@dataclass
class GGUFMetadata:
    """What a GGUF header says: key/values (long arrays skipped), tensor count and size facts."""

    version: int
    values: dict[str, Any] = field(default_factory=dict)
    tensor_count: int = 0
    parameter_count: int = 0
    tensor_types: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        """`general.architecture`, e.g. "gemma3"."""
        value = self.values.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        """The trained context length (`<arch>.context_length`)."""
        value = self.values.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    def arch_int(self, name: str) -> int | None:
        """An integer `<arch>.<name>` value such as `block_count`, or None when absent or not an integer."""
        value = self.values.get(f"{self.architecture}.{name}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def arch_ints(self, name: str) -> int | tuple[int, ...] | None:
        """Like `arch_int`, but also a per-layer list (some models vary `attention.head_count_kv` by layer)."""
        value = self.values.get(f"{self.architecture}.{name}")
        if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
            return tuple(value)
        return self.arch_int(name)

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template stored in the file, if any."""
        value = self.values.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def quantization(self) -> str:
        """File type name such as Q4_K_M, from `general.file_type` or else the dominant tensor type."""
        file_type = self.values.get("general.file_type")
        if isinstance(file_type, int):
            try:
                return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
            except ValueError:
                pass
        if not self.tensor_types:
            return "unknown"
        return max(self.tensor_types.items(), key=lambda item: item[1])[0]


class _Cursor:
    """Sequential little-endian reads over a buffer with bounds checks."""

    def __init__(self, buffer: mmap.mmap, size: int) -> None:
        self.buffer = buffer
        self.size = size
        self.offset = 0

    def take(self, fmt: str) -> Any:
        width = struct.calcsize("<" + fmt)
        if self.offset + width > self.size:
            raise GGUFFormatError(f"file ends inside the header (offset {self.offset})")
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += width
        return value

    def string(self) -> str:
        length = self.take("Q")
        if length > MAX_STRING_BYTES or self.offset + length > self.size:
            raise GGUFFormatError(f"string of {length} bytes at offset {self.offset} overruns the file")
        raw = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.take("Q")
            if length > MAX_STRING_BYTES:
                raise GGUFFormatError(f"string of {length} bytes at offset {self.offset} overruns the file")
            self.offset += length
        if self.offset > self.size:
            raise GGUFFormatError("file ends inside a string array")


def _read_value(cursor: _Cursor, raw_type: int) -> Any:
    try:
        value_type = GGUFValueType(raw_type)
    except ValueError as exc:
        raise GGUFFormatError(f"unknown value type {raw_type} at offset {cursor.offset}") from exc
    if value_type == GGUFValueType.STRING:
        return cursor.string()
    if value_type in _SCALARS:
        return cursor.take(_SCALARS[value_type])
    if value_type != GGUFValueType.ARRAY:
        raise GGUFFormatError(f"unsupported value type {value_type.name}")
    item_type = cursor.take("I")
    length = cursor.take("Q")
    if length <= MAX_KEPT_ARRAY:
        return [_read_value(cursor, item_type) for _ in range(length)]
    if item_type == GGUFValueType.STRING:
        cursor.skip_strings(length)
    elif item_type in {t.value for t in _SCALARS}:
        cursor.offset += struct.calcsize("<" + _SCALARS[GGUFValueType(item_type)]) * length
    else:
        raise GGUFFormatError(f"unsupported array element type {item_type}")
    if cursor.offset > cursor.size:
        raise GGUFFormatError("file ends inside an array")
    return SkippedArray(length)


def _tensor_bytes(shape: list[int], type_id: int) -> int:
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError) as exc:
        raise GGUFFormatError(f"unknown tensor type {type_id}") from exc
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block_size * type_size


def read_gguf_metadata(path: Path) -> GGUFMetadata:
    """Parse `path`'s header and tensor table; raise GGUFFormatError if it is not a sound GGUF file."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4)
    if head != struct.pack("<I", GGUF_MAGIC):
        raise GGUFFormatError(f"not a GGUF file (it starts with {head!r})" if head else "not a GGUF file (it is empty)")
    if size < 24:
        raise GGUFFormatError(f"file is {size} bytes, too small to be GGUF")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        cursor = _Cursor(buffer, size)
        magic = cursor.take("I")
        if magic != GGUF_MAGIC:
            raise GGUFFormatError(f"not a GGUF file (magic bytes {bytes(buffer[:4])!r})")
        version = cursor.take("I")
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        tensor_count, kv_count = cursor.take("Q"), cursor.take("Q")
        if kv_count > MAX_KV_COUNT or tensor_count > MAX_TENSOR_COUNT:
            raise GGUFFormatError(f"implausible header counts ({kv_count} keys, {tensor_count} tensors)")
        metadata = GGUFMetadata(version=version, tensor_count=tensor_count)
        for _ in range(kv_count):
            key = cursor.string()
            metadata.values[key] = _read_value(cursor, cursor.take("I"))
        data_end = _read_tensor_table(cursor, metadata, tensor_count)
        alignment = metadata.values.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0:
            raise GGUFFormatError(f"invalid general.alignment {alignment!r}")
        data_start = -(-cursor.offset // alignment) * alignment
        if data_start + data_end > size:
            missing = data_start + data_end - size
            raise GGUFFormatError(f"file is truncated: tensor data needs {missing} more bytes")
    return metadata


def _read_tensor_table(cursor: _Cursor, metadata: GGUFMetadata, tensor_count: int) -> int:
    """Read tensor infos; return the end offset of tensor data relative to the data section."""
    data_end = 0
    for _ in range(tensor_count):
        name = cursor.string()
        n_dims = cursor.take("I")
        if n_dims > 8:
            raise GGUFFormatError(f"tensor {name!r} claims {n_dims} dimensions")
        shape = [cursor.take("Q") for _ in range(n_dims)]
        type_id = cursor.take("I")
        offset = cursor.take("Q")
        data_end = max(data_end, offset + _tensor_bytes(shape, type_id))
        elements = 1
        for dim in shape:
            elements *= dim
        metadata.parameter_count += elements
        type_name = GGMLQuantizationType(type_id).name
        metadata.tensor_types[type_name] = metadata.tensor_types.get(type_name, 0) + elements
    return data_end
