"""A corpus of hostile GGUF files, and a writer that gives a real model a new chat template.

Every file is written here byte by byte with `struct`, independently of the reader under test
(`pensieve.engine.gguf_metadata`), so a bug in the reader cannot hide in the corpus. Each entry lies in one way
that has crashed, hung or exhausted GGUF readers: a header cut short, counts of 2**63, strings and arrays whose
claimed length the file cannot hold, arrays nested thousands deep, tensors past the end of the file, misaligned
or with dimensions whose product overflows int64. `HOSTILE` maps each file's model id to the words its error
must contain.

`write_with_chat_template` copies a real model with `tokenizer.chat_template` replaced (the tensor data is
copied unchanged, re-aligned), which is how a CVE-2024-34359 style template payload reaches a file llama.cpp
loads without complaint: the payload is then stopped only by the sandbox the template is rendered in.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
ALIGNMENT = 32
# GGUF value types (ggml's gguf.h).
UINT8, UINT32, FLOAT32, STRING, ARRAY, UINT64 = 0, 4, 6, 8, 9, 10
TENSOR_F32 = 0


def gguf_string(text: str | bytes) -> bytes:
    """A GGUF string: its uint64 length, then its bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_string(key: str, value: str) -> bytes:
    """A key/value pair holding a string."""
    return gguf_string(key) + struct.pack("<I", STRING) + gguf_string(value)


def kv_uint32(key: str, value: int) -> bytes:
    """A key/value pair holding a uint32."""
    return gguf_string(key) + struct.pack("<II", UINT32, value)


def tensor_info(name: str, shape: list[int], *, type_id: int = TENSOR_F32, offset: int = 0) -> bytes:
    """One entry of the tensor table."""
    dims = b"".join(struct.pack("<Q", dim) for dim in shape)
    return gguf_string(name) + struct.pack("<I", len(shape)) + dims + struct.pack("<IQ", type_id, offset)


def gguf_file(
    kvs: list[bytes],
    tensors: list[bytes],
    data: bytes = b"",
    *,
    version: int = 3,
    kv_count: int | None = None,
    tensor_count: int | None = None,
) -> bytes:
    """A GGUF file from raw key/value and tensor entries; the counts default to the entries given."""
    head = GGUF_MAGIC + struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    header = head + b"".join(kvs) + b"".join(tensors)
    padding = -len(header) % ALIGNMENT
    return header + b"\0" * padding + data


BASE_KVS = [kv_string("general.architecture", "llama"), kv_string("general.name", "hostile")]
WEIGHT = tensor_info("weight", [8])
WEIGHT_DATA = struct.pack("<8f", *range(8))


def valid_tiny(template: str | None = None) -> bytes:
    """A small, structurally sound GGUF file (one 8-float tensor), with `template` as its chat template."""
    kvs = [*BASE_KVS, *([kv_string("tokenizer.chat_template", template)] if template is not None else [])]
    return gguf_file(kvs, [WEIGHT], WEIGHT_DATA)


def _nested_arrays(depth: int) -> bytes:
    """An array holding an array holding an array ... `depth` deep, innermost empty."""
    value = struct.pack("<IQ", UINT8, 0)
    for _ in range(depth - 1):
        value = struct.pack("<IQ", ARRAY, 1) + value
    return gguf_string("deep") + struct.pack("<I", ARRAY) + value


def _cut_inside_kv() -> bytes:
    whole = valid_tiny("x" * 200)
    return whole[: whole.index(b"x" * 200) + 100]


@dataclass(frozen=True)
class Hostile:
    """One hostile file: how to make its bytes, and what its error must say (any of `problems`)."""

    make: Callable[[], bytes]
    problems: tuple[str, ...]


HOSTILE: dict[str, Hostile] = {
    "zero-bytes": Hostile(lambda: b"", ("empty",)),
    "wrong-magic": Hostile(lambda: b"GGML" + valid_tiny()[4:], ("not a GGUF file",)),
    "version-99": Hostile(lambda: gguf_file(BASE_KVS, [WEIGHT], WEIGHT_DATA, version=99), ("version 99",)),
    "header-truncated": Hostile(lambda: valid_tiny()[:30], ("key/value pairs",)),
    "kv-truncated": Hostile(_cut_inside_kv, ("overruns the file", "ends inside")),
    "kv-count-2e63": Hostile(lambda: gguf_file(BASE_KVS, [WEIGHT], WEIGHT_DATA, kv_count=2**63), ("implausible",)),
    "kv-count-unbacked": Hostile(lambda: gguf_file(BASE_KVS, [], kv_count=999_999), ("999999 key/value pairs",)),
    "tensor-count-unbacked": Hostile(lambda: gguf_file(BASE_KVS, [WEIGHT], tensor_count=9_999_999), ("tensors",)),
    "string-length-2e63": Hostile(
        lambda: gguf_file([struct.pack("<Q", 2**63) + b"general.name", *BASE_KVS], []), ("overruns the file",)
    ),
    "array-count-2e62": Hostile(
        lambda: gguf_file([gguf_string("big") + struct.pack("<IIQ", ARRAY, UINT8, 2**62), *BASE_KVS], []),
        ("array elements",),
    ),
    "string-array-count-2e62": Hostile(
        lambda: gguf_file([gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 2**62)], []),
        ("array elements",),
    ),
    "arrays-nested-5000-deep": Hostile(lambda: gguf_file([_nested_arrays(5000)], []), ("nested more than",)),
    "tensor-offset-past-eof": Hostile(
        lambda: gguf_file(BASE_KVS, [tensor_info("weight", [8], offset=2**40)], WEIGHT_DATA), ("truncated",)
    ),
    "tensor-offset-misaligned": Hostile(
        lambda: gguf_file(BASE_KVS, [tensor_info("weight", [8], offset=3)], WEIGHT_DATA * 2), ("alignment",)
    ),
    "tensor-dims-overflow": Hostile(
        lambda: gguf_file(BASE_KVS, [tensor_info("weight", [2**32, 2**32, 2**32])], WEIGHT_DATA), ("overflows",)
    ),
    "tensor-dims-5000": Hostile(lambda: gguf_file(BASE_KVS, [tensor_info("w", [1] * 5000)]), ("5000 dimensions",)),
    "tensor-type-unknown": Hostile(
        lambda: gguf_file(BASE_KVS, [tensor_info("weight", [8], type_id=999)], WEIGHT_DATA), ("unknown type 999",)
    ),
    "alignment-zero": Hostile(
        lambda: gguf_file([*BASE_KVS, kv_uint32("general.alignment", 0)], [WEIGHT], WEIGHT_DATA), ("alignment",)
    ),
    "value-type-unknown": Hostile(
        lambda: gguf_file([gguf_string("odd") + struct.pack("<II", 77, 0), *BASE_KVS], []), ("unknown value type 77",)
    ),
    "duplicate-key": Hostile(lambda: gguf_file([*BASE_KVS, *BASE_KVS], [WEIGHT], WEIGHT_DATA), ("duplicate key",)),
}


def template_payloads(marker: Path) -> dict[str, str]:
    """CVE-2024-34359 style chat templates that, rendered outside a sandbox, would create `marker`."""
    command = f"touch {marker}"
    return {
        # Reaches os.system through the template object's globals.
        "template-globals": f"{{{{ self.__init__.__globals__.__builtins__.__import__('os').system('{command}') }}}}",
        # The payload of the original advisory: walk object's subclasses to one whose module has __builtins__.
        "template-subclasses": (
            "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
            f"{{{{ x()._module.__builtins__['__import__']('os').popen('{command}').read() }}}}"
            "{% endif %}{% endfor %}"
        ),
    }


def write_hostile_corpus(folder: Path) -> dict[str, tuple[str, ...]]:
    """Write every file of `HOSTILE` into `folder` as `<id>.gguf`; return id -> the words its error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    for model_id, hostile in HOSTILE.items():
        (folder / f"{model_id}.gguf").write_bytes(hostile.make())
    return {model_id: hostile.problems for model_id, hostile in HOSTILE.items()}


class _Walker:
    """Just enough of a GGUF reader to find where each key/value and the tensor table end."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.at = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.head, self.at)
        self.at += struct.calcsize("<" + fmt)
        return int(value)

    def skip_value(self, value_type: int) -> None:
        if value_type == STRING:
            length = self.take("Q")  # read before `self.at` is: take() moves it
            self.at += length
        elif value_type == ARRAY:
            item_type, count = self.take("I"), self.take("Q")
            for _ in range(count):
                self.skip_value(item_type)
        else:
            self.at += {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}[value_type]


def write_with_chat_template(source: Path, target: Path, template: str, *, header_bytes: int = 16 << 20) -> None:
    """Copy the GGUF model `source` to `target` with `tokenizer.chat_template` set to `template`.

    The key/values are rewritten (any old template dropped, the new one appended), the tensor table is kept,
    and the tensor data is copied unchanged after re-padding to the alignment (tensor offsets are relative
    to the data section, so they stay valid). The header must fit in the first `header_bytes`.
    """
    with source.open("rb") as handle:
        head = handle.read(header_bytes)
    walker = _Walker(head)
    walker.at = 4
    version, tensor_count, kv_count = walker.take("I"), walker.take("Q"), walker.take("Q")
    kept: list[bytes] = []
    alignment = ALIGNMENT
    for _ in range(kv_count):
        start = walker.at
        length = walker.take("Q")
        key = head[walker.at : walker.at + length].decode()
        walker.at += length
        value_type = walker.take("I")
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", head, walker.at)[0]
        walker.skip_value(value_type)
        if key != "tokenizer.chat_template":
            kept.append(head[start : walker.at])
    tensors_start = walker.at
    for _ in range(tensor_count):
        name_length = walker.take("Q")
        walker.at += name_length
        n_dims = walker.take("I")
        walker.at += 8 * n_dims + 4 + 8  # the dimensions, the type and the offset
    tensors = head[tensors_start : walker.at]
    data_start = walker.at + (-walker.at % alignment)
    kept.append(kv_string("tokenizer.chat_template", template))
    header = GGUF_MAGIC + struct.pack("<IQQ", version, tensor_count, len(kept)) + b"".join(kept) + tensors
    with source.open("rb") as reader, target.open("wb") as writer:
        writer.write(header + b"\0" * (-len(header) % alignment))
        reader.seek(data_start)
        shutil.copyfileobj(reader, writer, 16 << 20)
