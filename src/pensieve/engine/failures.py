"""What the server remembers about models that failed: a load that did not succeed and the last worker crash.

A load failure is kept while the model's file is unchanged, so repeated requests fail fast with the same
message instead of re-reading a broken file (or re-crashing a llama.cpp build this CPU cannot run). A crash
(a worker that died by a signal or an unexpected exit, while loading or while serving) is kept as the last
crash of its model even after a new worker has loaded it, marked with when that happened: a user who
finds a restarted worker still learns what killed the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pensieve.diagnostics.exit_status import signal_name

Stage = Literal["loading", "serving"]


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


class FailureLog:
    """Per model: the remembered load failure (until its file changes or a load succeeds) and the last crash."""

    def __init__(self) -> None:
        self._loads: dict[str, _LoadFailure] = {}
        self._crashes: dict[str, ModelFailure] = {}

    def load_failure(self, model_id: str) -> ModelFailure | None:
        """The remembered load failure of a model, whatever its file is now."""
        failure = self._loads.get(model_id)
        return failure.record if failure else None

    def load_failure_for_file(self, model_id: str, size_bytes: int, modified_ns: int) -> ModelFailure | None:
        """The remembered load failure, only while the file is the one that failed (same size and mtime)."""
        failure = self._loads.get(model_id)
        if failure and (failure.size_bytes, failure.modified_ns) == (size_bytes, modified_ns):
            return failure.record
        return None

    def load_failed(self, record: ModelFailure, size_bytes: int, modified_ns: int, *, crashed: bool) -> None:
        """Remember a failed load of this file; a worker that died doing it (`crashed`) is also the last crash."""
        self._loads[record.model_id] = _LoadFailure(size_bytes, modified_ns, record)
        if crashed:
            self._crashes[record.model_id] = record

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
