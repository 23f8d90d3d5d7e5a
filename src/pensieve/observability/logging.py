"""Logging set-up: lines on the console and a rotating file under the log folder, as text or JSON.

Every record carries the id of the HTTP request it was logged for (`request_id`, '-' outside requests),
taken from `pensieve.observability.request_id`, in both formats. JSON is one object per line (ts, level,
logger, message, request_id, and exc when a traceback is attached), for log shippers.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pensieve.observability.request_id import current_request_id
from pensieve.settings_sections import LogFormat

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"
LOG_FILE = "pensieve.log"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record: the current request's id, or '-' outside any request."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record (never drops one)."""
        # A record made inside a request but formatted elsewhere keeps the id it was stamped with.
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601 UTC), level, logger, message, request_id, exc.

    A record logged with `extra={"fields": {...}}` (the access log) adds those keys too.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines inside values are escaped by json)."""
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id() or "-",
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of PENSIEVE_LOG_FORMAT: readable text lines, or JSON lines."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)


def configure_logging(level: str, log_dir: Path | None, log_format: LogFormat = "text") -> None:
    """Send Pensieve's and uvicorn's logs to stderr and, when `log_dir` is writable, to a rotating file."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    problem: OSError | None = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    log_dir / LOG_FILE, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
                )
            )
        except OSError as exc:
            problem = exc
    formatter = make_formatter(log_format)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        # On the handlers, not a logger: records propagated from every logger (uvicorn's too) pass here.
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's own loggers propagate to the root so they share the handlers and format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    if problem is not None:  # logged once the handlers exist, so it reaches the console in the chosen format
        logging.getLogger(__name__).warning("cannot write logs to %s: %s", log_dir, problem)
