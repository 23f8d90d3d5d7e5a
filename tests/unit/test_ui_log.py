"""logs/ui.log rotates like the server's log and keeps every line of the UI's output, in order.

A real child process stands in for Streamlit (the real UI runs in tests/ui and tests/setup): it writes
numbered lines through a pipe, as `pensieve up` starts the UI, and `copy_output` writes them to the log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pensieve.ui.launch import UI_LOG_BACKUPS, UI_LOG_MAX_BYTES, copy_output

WRITER = """
import sys
for i in range(3000):
    sys.stdout.write(f"line {i:05d} 100% of " + "x" * 60 + "\\n")
sys.stdout.buffer.write(b"bad utf-8 \\xff\\n")
sys.stdout.write("last words without a newline")
"""


def _run(log: Path, **limits: int) -> None:
    process = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    copying = copy_output(process.stdout, log, **limits)
    assert process.wait(timeout=60) == 0
    copying.join(timeout=30)
    assert not copying.is_alive()


def test_the_ui_log_rotates_and_keeps_the_newest_lines_in_order(tmp_path: Path) -> None:
    log = tmp_path / "ui.log"
    _run(log, max_bytes=50_000, backups=3)
    files = [log.with_name(f"ui.log.{n}") for n in (3, 2, 1)] + [log]
    assert all(path.exists() for path in files) and not log.with_name("ui.log.4").exists()
    assert all(path.stat().st_size <= 50_000 for path in files)
    lines = [line for path in files for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[-2:] == ["bad utf-8 \ufffd", "last words without a newline"]
    numbered = [int(line.split()[1]) for line in lines[:-2]]
    assert numbered == list(range(numbered[0], 3000)), "the kept lines are the newest, none lost or reordered"
    assert numbered[0] > 0 and all("100% of" in line for line in lines[:-2])


def test_the_defaults_match_the_servers_log(tmp_path: Path) -> None:
    from pensieve.observability.logging import LOG_BACKUPS, LOG_MAX_BYTES

    assert (UI_LOG_MAX_BYTES, UI_LOG_BACKUPS) == (LOG_MAX_BYTES, LOG_BACKUPS) == (10 * 1024 * 1024, 3)
    log = tmp_path / "ui.log"
    log.write_text("from an earlier run\n", encoding="utf-8")
    _run(log)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "from an earlier run" and len(lines) == 1 + 3000 + 2, "appended, not rotated, under 10 MB"
