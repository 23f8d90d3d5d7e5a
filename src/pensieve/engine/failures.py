"""What the server remembers about models that failed: a load that did not succeed and the last worker crash.

A load failure is kept while the model's file is unchanged, so repeated requests fail fast with the same
message instead of re-reading a broken file (or re-crashing a llama.cpp build this CPU cannot run). A
transient one is not: a worker killed by SIGKILL (the out-of-memory killer) or SIGTERM, or a load that timed
out, may well succeed next time, so requests are refused with 503 and Retry-After only for a short back-off
(TRANSIENT_RETRY_SECONDS, doubled after each transient failure in a row, at most TRANSIENT_RETRY_MAX_SECONDS,
so a crash loop does not spin), and the next request after it loads again. A crash
(a worker that died by a signal or an unexpected exit, while loading or while serving) is kept as the last
crash of its model even after a new worker has loaded it, marked with when that happened: a user who
finds a restarted worker still learns what killed the previous one.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from typing import Any, Literal

from pensieve.diagnostics.exit_status import signal_name
from pensieve.errors import ModelLoadError, PensieveError, ServiceUnavailableError

Stage = Literal["loading", "serving"]

# The first back-off after a transient load failure; it doubles with each one in a row, up to the maximum
# (which stays within the 60 s Retry-After the openai SDK honours).
TRANSIENT_RETRY_SECONDS = 3.0
TRANSIENT_RETRY_MAX_SECONDS = 60.0
# Deaths from outside the worker, not caused by the file: the OOM killer's SIGKILL, a SIGTERM. SIGILL, SIGSEGV,
# SIGBUS or SIGABRT while loading come from the file or the llama.cpp build and would happen again.
_TRANSIENT_SIGNALS = tuple(-int(sig) for sig in (getattr(signal, "SIGKILL", 9), signal.SIGTERM))


def is_transient_exit(exit_code: int | None) -> bool:
    """True when a worker that died with this exit status may load fine if tried again (killed from outside)."""
    return exit_code in _TRANSIENT_SIGNALS


@dataclass(frozen=True)
class ModelFailure:
    """One failure of a model: when (Unix time), at which stage, the message users see, and the exit status
    of its worker when the worker died (None when llama.cpp refused the file and the worker said so, or when
    the exit status could not be read)."""

    model_id: str
    stage: Stage
    message: str
    at: float
    exit_code: int | None = None
    recovered_at: float | None = None  # a worker loaded the model again after this failure

    @property
    def signal(self) -> str | None:
        """The name of the signal that killed the worker ("SIGILL"), or None."""
        return signal_name(self.exit_code)

    def to_json(self) -> dict[str, Any]:
        """The entry of /api/ps `failures` and of /ready `last_crash`."""
        return {
            "id": self.model_id,
            "stage": self.stage,
            "message": self.message,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "at": self.at,
            "recovered": self.recovered_at is not None,
            "recovered_at": self.recovered_at,
        }


@dataclass(frozen=True)
class _LoadFailure:
    size_bytes: int
    modified_ns: int
    record: ModelFailure
    retry_at: float | None = None  # set for a transient failure: when the load may be tried again
    transient_in_a_row: int = 0


class FailureLog:
    """Per model: the remembered load failure (until its file changes or a load succeeds) and the last crash."""

    def __init__(self) -> None:
        self._loads: dict[str, _LoadFailure] = {}
        self._crashes: dict[str, ModelFailure] = {}

    def load_failure(self, model_id: str) -> ModelFailure | None:
        """The remembered load failure of a model, whatever its file is now."""
        failure = self._loads.get(model_id)
        return failure.record if failure else None

    def load_failure_for_file(
        self, model_id: str, size_bytes: int, modified_ns: int, now: float | None = None
    ) -> ModelFailure | None:
        """The remembered load failure, only while the file is the one that failed (same size and mtime); a
        transient one only until its back-off has passed at `now` (Unix time; None: it has not)."""
        failure = self._loads.get(model_id)
        if failure is None or (failure.size_bytes, failure.modified_ns) != (size_bytes, modified_ns):
            return None
        if failure.retry_at is not None and now is not None and now >= failure.retry_at:
            return None
        return failure.record

    def retry_in(self, model_id: str, now: float) -> float | None:
        """Seconds until a transient load failure may be tried again (0 once it may); None if not transient."""
        failure = self._loads.get(model_id)
        if failure is None or failure.retry_at is None:
            return None
        return max(0.0, failure.retry_at - now)

    def load_failed(
        self, record: ModelFailure, size_bytes: int, modified_ns: int, *, crashed: bool, transient: bool = False
    ) -> None:
        """Remember a failed load of this file; a worker that died doing it (`crashed`) is also the last crash.

        A `transient` failure holds for a back-off from `record.at`, doubled for each transient failure of the
        same file in a row; any other is kept until the file changes or a load succeeds.
        """
        retry_at, in_a_row = None, 0
        if transient:
            previous = self._loads.get(record.model_id)
            same_file = previous is not None and (previous.size_bytes, previous.modified_ns) == (
                size_bytes,
                modified_ns,
            )
            in_a_row = previous.transient_in_a_row + 1 if previous is not None and same_file else 1
            retry_at = record.at + min(TRANSIENT_RETRY_MAX_SECONDS, TRANSIENT_RETRY_SECONDS * 2 ** (in_a_row - 1))
        self._loads[record.model_id] = _LoadFailure(size_bytes, modified_ns, record, retry_at, in_a_row)
        if crashed:
            self._crashes[record.model_id] = record

    def refusal(self, record: ModelFailure, now: float) -> PensieveError:
        """The error a request for a model with this load failure gets: 503 with Retry-After while a transient
        failure's back-off runs, else ModelLoadError (500, not worth retrying until the file changes)."""
        wait = self.retry_in(record.model_id, now)
        if wait is None:
            return ModelLoadError(record.message)
        return ServiceUnavailableError(
            f"{record.message} This looks transient: the model is loaded again in {max(1, round(wait))} s.",
            param="model",
            code="model_load_interrupted",
            retry_after_seconds=wait,
        )

    def crashed(self, record: ModelFailure) -> bool:
        """Remember a worker that died while serving; False when this very crash was already noted."""
        known = self._crashes.get(record.model_id)
        if known is not None and replace(known, recovered_at=record.recovered_at) == record:
            return False
        self._crashes[record.model_id] = record
        return True

    def loaded(self, model_id: str, at: float) -> None:
        """A worker loaded the model: its load failure is forgotten, its last crash marked as recovered."""
        self._loads.pop(model_id, None)
        crash = self._crashes.get(model_id)
        if crash is not None and crash.recovered_at is None:
            self._crashes[model_id] = replace(crash, recovered_at=at)

    def current(self, model_id: str) -> ModelFailure | None:
        """What keeps the model from serving now: its load failure, else a crash no load has followed yet."""
        load = self.load_failure(model_id)
        if load is not None:
            return load
        crash = self._crashes.get(model_id)
        return crash if crash is not None and crash.recovered_at is None else None

    def all(self) -> list[ModelFailure]:
        """One entry per model that failed: its load failure if it has one, else its last crash; oldest first."""
        records = {model_id: crash for model_id, crash in self._crashes.items()}
        records.update({model_id: failure.record for model_id, failure in self._loads.items()})
        return sorted(records.values(), key=lambda record: record.at)
