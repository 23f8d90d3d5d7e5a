"""Logging set-up: readable lines on the console and a rotating file under the log folder."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FILE = "pensieve.log"


def configure_logging(level: str, log_dir: Path | None) -> None:
    """Send Pensieve's and uvicorn's logs to stderr and, when `log_dir` is writable, to a rotating file."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    log_dir / LOG_FILE, maxBytes=10 * 1024 * 1024, backupCount=3, encoding="utf-8"
                )
            )
        except OSError as exc:
            logging.getLogger(__name__).warning("cannot write logs to %s: %s", log_dir, exc)
    formatter = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's own loggers propagate to the root so they share the handlers and format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
