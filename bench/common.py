"""What the benchmarks share: the repository's paths, the server launcher, ports, percentiles, /proc figures.

Benchmarks run as scripts (`.venv/bin/python bench/bench_x.py`), so this folder is on sys.path and they
import this module as `common`. It puts `tests/` on sys.path too: the server launcher is the suites' own
(`tests/support/server.py`), so a bench server starts exactly like a test server.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"

if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))

from pensieve.config import Settings  # noqa: E402
from support.models import ModelsFolder  # noqa: E402 - needs tests/ on sys.path, set just above
from support.server import ServerHandle, free_port, launch_server  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "REPO_ROOT",
    "ServerHandle",
    "children",
    "fmt",
    "free_port",
    "median",
    "percentile",
    "process_cpu_seconds",
    "rss_bytes",
    "start_server",
    "table",
]


def start_server(
    name: str,
    model: Path,
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    ready_path: str = "/ready",
    new_session: bool = False,
    ready_timeout: float = 120.0,
) -> ServerHandle:
    """`pensieve serve` for `model` (its folder is the models folder), started and waited for.

    `env` holds PENSIEVE_* settings; the launcher drops the caller's own and runs from `work_dir`. The
    context window is the server's default (not the test suites' smaller one) unless `env` sets it.
    """
    env = {"PENSIEVE_N_CTX": str(Settings.from_values().engine.n_ctx), **(env or {})}
    models = ModelsFolder(path=model.parent, model_id=model.stem, model_file=model, bad_ids=())
    return launch_server(
        name,
        models,
        work_dir,
        env,
        ready_path=ready_path,
        new_session=new_session,
        ready_timeout=ready_timeout,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile (`fraction` in 0..1) ignoring NaNs; NaN for no values."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """Median ignoring NaNs; NaN for no values."""
    return percentile(values, 0.5)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc (10 ms resolution); NaN if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for the table; '-' for missing values."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with aligned columns."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])
