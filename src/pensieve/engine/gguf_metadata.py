"""Read and validate a GGUF file's header without loading its weights.

`gguf.GGUFReader` parses every tokenizer entry into numpy views, which takes many seconds for Gemma 3's
262,144-token vocabulary (bench/README.md has the figure). Listing models must be instant, so this
reader walks the header with `struct` over an mmap, keeps scalar values and short arrays, and skips long
arrays. It uses the `gguf` package's own constants for value types, tensor types and block sizes, and checks that every
tensor's data lies inside the file, which catches truncated downloads before llama.cpp sees them.

Any file in models/ may be hostile, and this runs in the server process, so the reader is written to fail only
with GGUFFormatError, quickly: every count the file gives is checked against the bytes left before anything is
read or allocated by it, arrays may nest only MAX_ARRAY_DEPTH deep (no unbounded recursion), and tensor shapes,
offsets and the alignment are checked the way llama.cpp's own loader checks them (tests/support/hostile_gguf.py
writes a file for each way a header can lie).
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
# llama.cpp refuses nested arrays; the gguf writer allows them, so a little nesting is read, never unbounded.
MAX_ARRAY_DEPTH = 2
GGML_MAX_DIMS = 4
_INT64_MAX = 2**63 - 1
# The fewest bytes one entry can take, to refuse a count the rest of the file cannot hold before looping over it:
# a key/value is a key length (8), a value type (4) and at least a 1-byte value; a tensor info is a name
# length (8), a dimension count (4), a type (4) and an offset (8); a string is its length (8); an array its
# element type (4) and length (8).
_MIN_KV_BYTES = 13
_MIN_TENSOR_INFO_BYTES = 24
_MIN_STRING_BYTES = 8
_MIN_ARRAY_BYTES = 12

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

    @property
    def remaining(self) -> int:
        """Bytes left after the current offset."""
        return max(0, self.size - self.offset)

    def expect(self, count: int, each: int, what: str) -> None:
        """Refuse `count` entries of at least `each` bytes when the rest of the file cannot hold them."""
        if count * each > self.remaining:
            raise GGUFFormatError(
                f"file is truncated or corrupt: the header claims {count} {what} at offset {self.offset}, more than "
                f"the {self.remaining} bytes left in the file can hold"
            )

    def take(self, fmt: str) -> Any:
        """One little-endian value of struct format `fmt`."""
        width = struct.calcsize("<" + fmt)
        if self.offset + width > self.size:
            raise GGUFFormatError(f"file ends inside the header (offset {self.offset})")
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += width
        return value

    def string(self) -> str:
        """A length-prefixed UTF-8 string (undecodable bytes replaced)."""
        length = self.take("Q")
        if length > MAX_STRING_BYTES or self.offset + length > self.size:
            raise GGUFFormatError(f"string of {length} bytes at offset {self.offset} overruns the file")
        raw = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings without decoding them."""
        self.expect(count, _MIN_STRING_BYTES, "strings")
        for _ in range(count):
            length = self.take("Q")
            if length > MAX_STRING_BYTES:
                raise GGUFFormatError(f"string of {length} bytes at offset {self.offset} overruns the file")
            self.offset += length
        if self.offset > self.size:
            raise GGUFFormatError("file ends inside a string array")


def _element_bytes(item_type: int) -> int:
    """The fewest bytes one array element of this type takes (0 for an unknown type, refused when read)."""
    try:
        value_type = GGUFValueType(item_type)
    except ValueError:
        return 0
    if value_type in _SCALARS:
        return struct.calcsize("<" + _SCALARS[value_type])
    return _MIN_STRING_BYTES if value_type == GGUFValueType.STRING else _MIN_ARRAY_BYTES


def _read_value(cursor: _Cursor, raw_type: int, depth: int = 0) -> Any:
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
    if depth >= MAX_ARRAY_DEPTH:
        raise GGUFFormatError(f"arrays nested more than {MAX_ARRAY_DEPTH} deep at offset {cursor.offset}")
    item_type = cursor.take("I")
    length = cursor.take("Q")
    # Checked before the loop: a claimed length of 2**62 must not be iterated (or allocated) one element at a time.
    cursor.expect(length, max(1, _element_bytes(item_type)), "array elements")
    if length <= MAX_KEPT_ARRAY:
        return [_read_value(cursor, item_type, depth + 1) for _ in range(length)]
    if item_type == GGUFValueType.STRING:
        cursor.skip_strings(length)
    elif item_type in {t.value for t in _SCALARS}:
        cursor.offset += struct.calcsize("<" + _SCALARS[GGUFValueType(item_type)]) * length
    else:
        raise GGUFFormatError(f"unsupported array element type {item_type}")
    if cursor.offset > cursor.size:
        raise GGUFFormatError("file ends inside an array")
    return SkippedArray(length)


def _tensor_bytes(name: str, shape: list[int], type_id: int) -> tuple[int, int]:
    """(elements, data bytes) of one tensor, refused as llama.cpp refuses it: unknown type, a first dimension
    that is not a whole number of blocks, or an element count or size past int64."""
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError) as exc:
        raise GGUFFormatError(f"tensor {name!r} has unknown type {type_id}") from exc
    elements = 1
    for dim in shape:
        elements *= dim
        if elements > _INT64_MAX:  # llama.cpp multiplies in int64: this would overflow there
            raise GGUFFormatError(f"tensor {name!r} has dimensions {shape} whose product overflows")
    if shape and shape[0] % block_size:
        raise GGUFFormatError(f"tensor {name!r} has a first dimension {shape[0]} not a multiple of {block_size}")
    size = elements // block_size * type_size
    if size > _INT64_MAX:
        raise GGUFFormatError(f"tensor {name!r} of dimensions {shape} is too large")
    return elements, size


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
        cursor.expect(kv_count, _MIN_KV_BYTES, "key/value pairs")
        metadata = GGUFMetadata(version=version, tensor_count=tensor_count)
        for _ in range(kv_count):
            key = cursor.string()
            if key in metadata.values:
                raise GGUFFormatError(f"duplicate key {key!r}")
            metadata.values[key] = _read_value(cursor, cursor.take("I"))
        alignment = metadata.values.get("general.alignment", DEFAULT_ALIGNMENT)
        # A power of two, as llama.cpp requires (and 0 would divide by zero below).
        if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
            raise GGUFFormatError(f"invalid general.alignment {alignment!r}")
        cursor.expect(tensor_count, _MIN_TENSOR_INFO_BYTES, "tensors")
        data_end = _read_tensor_table(cursor, metadata, tensor_count, alignment)
        data_start = -(-cursor.offset // alignment) * alignment
        if data_start + data_end > size:
            missing = data_start + data_end - size
            raise GGUFFormatError(f"file is truncated: tensor data needs {missing} more bytes")
    return metadata


def _read_tensor_table(cursor: _Cursor, metadata: GGUFMetadata, tensor_count: int, alignment: int) -> int:
    """Read tensor infos; return the end offset of tensor data relative to the data section."""
    data_end = 0
    names: set[str] = set()
    for _ in range(tensor_count):
        name = cursor.string()
        if name in names:
            raise GGUFFormatError(f"duplicate tensor {name!r}")
        names.add(name)
        n_dims = cursor.take("I")
        if n_dims > GGML_MAX_DIMS:
            raise GGUFFormatError(f"tensor {name!r} claims {n_dims} dimensions")
        shape = [cursor.take("Q") for _ in range(n_dims)]
        type_id = cursor.take("I")
        offset = cursor.take("Q")
        if offset % alignment:
            raise GGUFFormatError(f"tensor {name!r} has offset {offset}, not a multiple of the alignment {alignment}")
        elements, nbytes = _tensor_bytes(name, shape, type_id)
        data_end = max(data_end, offset + nbytes)
        metadata.parameter_count += elements
        type_name = GGMLQuantizationType(type_id).name
        metadata.tensor_types[type_name] = metadata.tensor_types.get(type_name, 0) + elements
    return data_end
