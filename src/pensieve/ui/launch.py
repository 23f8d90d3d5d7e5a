"""How the CLI starts the Streamlit UI: the command line, with telemetry off and Pensieve's theme, and its log.

Streamlit reads its configuration from flags, so nothing is written to `~/.streamlit`. Under `pensieve up`
the UI's output is copied line by line into `logs/ui.log`, which rotates like the server's log.
This module does not import Streamlit: the CLI uses it before Streamlit is needed.
"""

from __future__ import annotations

import importlib.util
import logging
import logging.handlers
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

APP_PATH = Path(__file__).with_name("app.py")
logger = logging.getLogger(__name__)
# The same rotation as the server's logs/pensieve.log (10 MB, 3 old files): a UI left running for months
# must not fill the disk. Not imported from the server's code: the UI imports none of it.
UI_LOG_MAX_BYTES = 10 * 1024 * 1024
UI_LOG_BACKUPS = 3

# Streamlit options as `--section.option value` flags.
STREAMLIT_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    "browser.gatherUsageStats": "false",
    "server.showEmailPrompt": "false",
    "client.toolbarMode": "minimal",
    "theme.base": "light",
    "theme.primaryColor": "#6D4AFF",
    "theme.backgroundColor": "#FFFFFF",
    "theme.secondaryBackgroundColor": "#F5F4FB",
    "theme.textColor": "#1F1A33",
}


def ui_unavailable() -> str | None:
    """Why the UI cannot start here (Streamlit missing), or None when it can."""
    if importlib.util.find_spec("streamlit") is not None:
        return None
    if sys.version_info < (3, 11):
        return "the UI needs Python 3.11 or newer (Streamlit 1.67); this Python is " + sys.version.split()[0]
    return "Streamlit is not installed: run ./run_app.sh (or pip install -e .) to install it"


def streamlit_command(host: str, port: int) -> list[str]:
    """`python -m streamlit run .../app.py` bound to `host:port`, with Pensieve's options."""
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    command += ["--server.address", host, "--server.port", str(port)]
    for option, value in STREAMLIT_OPTIONS.items():
        command += [f"--{option}", value]
    return command


def ui_url(host: str, port: int) -> str:
    """The address a browser opens for a UI bound to `host:port`."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def watch_ui(process: subprocess.Popen[bytes], log_path: Path) -> threading.Event:
    """Log a warning if the UI process ends on its own (a busy port, a broken install).

    Set the returned event before stopping the UI on purpose, so that no warning is logged then.
    """
    stopping = threading.Event()

    def wait() -> None:
        status = process.wait()
        if not stopping.is_set() and status != 0:
            logger.warning("the UI stopped (exit status %s); see %s", status, log_path)

    threading.Thread(target=wait, name="pensieve-ui-watch", daemon=True).start()
    return stopping


def copy_output(
    stream: IO[bytes], log_path: Path, *, max_bytes: int = UI_LOG_MAX_BYTES, backups: int = UI_LOG_BACKUPS
) -> threading.Thread:
    """Copy a process's output, line by line, into `log_path`, rotated at `max_bytes` with `backups` old files.

    The returned thread ends when the process closes its output (it exits); join it to be sure the last
    lines are written.
    """
    handler = logging.handlers.RotatingFileHandler(log_path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))  # Streamlit's lines as they are, no second stamp

    def copy() -> None:
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                # A record without args: a '%' in Streamlit's output is written as it is.
                handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))
        finally:
            stream.close()
            handler.close()

    thread = threading.Thread(target=copy, name="pensieve-ui-log", daemon=True)
    thread.start()
    return thread
