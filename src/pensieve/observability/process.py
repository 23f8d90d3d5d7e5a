"""Figures about processes of this server: resident memory (the server's and its workers') and CPU use.

Linux reads /proc; elsewhere the server's own figure falls back to getrusage's peak and workers report None.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def process_rss_bytes(pid: int | None) -> int | None:
    """Resident memory of process `pid` from /proc/<pid>/status (Linux); None elsewhere or once it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def server_rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


class ProcessClock:
    """Uptime, and the CPU share this process used since the previous reading (what GET /api/system shows)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self._last = (self.started_at, time.process_time())

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self.started_at

    def cpu_percent(self) -> float:
        """Percent of one core used since the last call (or since start), 100 = one core busy throughout."""
        now_wall, now_cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._last
        self._last = (now_wall, now_cpu)
        elapsed = now_wall - last_wall
        return 100.0 * (now_cpu - last_cpu) / elapsed if elapsed > 0 else 0.0
