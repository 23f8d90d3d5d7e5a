"""Parsers and formatters for the human-friendly quantities in settings and requests: byte sizes and durations.

Kept free of other Pensieve imports so that `config.py` and the request schemas can both use them.
"""

from __future__ import annotations

import math
import re

# Units are case-insensitive. SI suffixes (KB, MB, ...) are powers of 1000 as on disk labels; IEC
# suffixes (KiB, Ki, ...) and the bare letters Docker uses (K, M, G, T) are powers of 1024.
_BYTE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A keep-alive of this value (or any negative one) means "forever".
FOREVER = -1.0


def parse_byte_size(value: str | int | float) -> int:
    """Bytes from `8GB`, `512MiB`, `1.5G`, `1048576` or `0`; ValueError with a one-line hint otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 8GB or 512MiB, not a boolean")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"a size cannot be {value}")
        return int(value)
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size: use a number of bytes or e.g. 8GB, 512MiB, 2G (0 = no limit)")
    number, unit = match.groups()
    factor = _BYTE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} in {value!r}: use B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB")
    return int(float(number) * factor)


def format_bytes(count: int | float) -> str:
    """`1234567890` -> `1.23 GB` (SI units, as users write limits such as 8GB)."""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"


def parse_duration_seconds(value: str | int | float) -> float:
    """Seconds from `300`, `"300"`, `"5m"`, `"1h30m"`, `"500ms"`; any negative value becomes -1 (forever).

    This is Ollama's `keep_alive` syntax (Go durations, or a plain number of seconds).
    """
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration such as 5m, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration cannot be {value}")
        return FOREVER if value < 0 else float(value)
    text = value.strip().lower()
    negative = text.startswith("-")
    body = text[1:] if negative else text
    try:
        seconds = float(body)
    except ValueError:
        parts = _DURATION_PART.findall(body)
        if not body or "".join(number + unit for number, unit in parts) != body:
            raise ValueError(
                f"{value!r} is not a duration: use seconds (300) or e.g. 30s, 5m, 1h30m; 0 = unload at once, -1 = never"
            ) from None
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"a duration cannot be {value!r}")
    return FOREVER if negative and seconds > 0 else seconds
