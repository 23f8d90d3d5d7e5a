"""The pool's memory of failed models: load failures tied to their file (transient ones only for a back-off),
last crashes kept after recovery."""

from __future__ import annotations

import signal

from pensieve.engine.failures import (
    TRANSIENT_RETRY_MAX_SECONDS,
    TRANSIENT_RETRY_SECONDS,
    FailureLog,
    ModelFailure,
    is_transient_exit,
)
from pensieve.errors import ModelLoadError, ServiceUnavailableError

SIGILL_MESSAGE = "Model 'm' cannot be loaded: the worker process crashed while loading: killed by SIGILL (...)."


def test_a_load_crash_blocks_its_file_until_a_load_succeeds_then_stays_as_the_recovered_last_crash() -> None:
    log = FailureLog()
    record = ModelFailure("m", "loading", SIGILL_MESSAGE, at=100.0, exit_code=-4)
    log.load_failed(record, size_bytes=10, modified_ns=5, crashed=True)
    assert log.load_failure_for_file("m", 10, 5) is record
    assert log.load_failure_for_file("m", 10, 6) is None  # the file changed: try again
    assert log.current("m") is record
    assert log.all()[0].to_json() == {
        "id": "m",
        "stage": "loading",
        "message": SIGILL_MESSAGE,
        "exit_code": -4,
        "signal": "SIGILL",
        "at": 100.0,
        "recovered": False,
        "recovered_at": None,
    }
    log.loaded("m", at=200.0)
    assert log.current("m") is None and log.load_failure("m") is None
    [last] = log.all()
    assert (last.signal, last.recovered_at, last.message) == ("SIGILL", 200.0, SIGILL_MESSAGE)


def test_a_load_error_the_worker_reported_is_not_a_crash() -> None:
    log = FailureLog()
    log.load_failed(ModelFailure("bad", "loading", "not GGUF", at=1.0), 1, 1, crashed=False)
    log.loaded("bad", at=2.0)
    assert log.all() == []


def test_a_crash_while_serving_is_current_until_a_new_worker_loads_and_is_noted_once() -> None:
    log = FailureLog()
    crash = ModelFailure("m", "serving", "stopped unexpectedly: killed by SIGKILL", at=5.0, exit_code=-9)
    assert log.crashed(crash) and not log.crashed(crash)
    assert log.current("m") is crash and log.load_failure("m") is None
    log.loaded("m", at=6.0)
    assert log.current("m") is None
    assert not log.crashed(crash)  # the dead worker seen again does not undo the recovery
    assert log.all()[0].recovered_at == 6.0
    later = ModelFailure("m", "serving", "stopped unexpectedly: killed by SIGILL", at=9.0, exit_code=-4)
    assert log.crashed(later) and log.current("m") is later


def test_a_load_failure_outranks_the_last_crash_and_entries_are_oldest_first() -> None:
    log = FailureLog()
    log.crashed(ModelFailure("a", "serving", "crash", at=3.0, exit_code=-11))
    log.load_failed(ModelFailure("a", "loading", "cannot load", at=4.0), 1, 1, crashed=False)
    log.crashed(ModelFailure("b", "serving", "crash b", at=1.0, exit_code=-4))
    assert [(f.model_id, f.message) for f in log.all()] == [("b", "crash b"), ("a", "cannot load")]


SIGKILL_MESSAGE = "Model 'm' cannot be loaded: the worker process crashed while loading: killed by SIGKILL (...)."


def test_only_a_death_from_outside_is_transient() -> None:
    assert is_transient_exit(-signal.SIGKILL) and is_transient_exit(-signal.SIGTERM)
    for exit_code in (-signal.SIGILL, -signal.SIGSEGV, -signal.SIGABRT, 1, 0, None):
        assert not is_transient_exit(exit_code), exit_code


def test_a_transient_load_failure_is_refused_with_503_during_its_back_off_then_tried_again() -> None:
    log = FailureLog()
    record = ModelFailure("m", "loading", SIGKILL_MESSAGE, at=100.0, exit_code=-9)
    log.load_failed(record, 10, 5, crashed=True, transient=True)
    assert log.load_failure_for_file("m", 10, 5, now=101.0) is record
    refusal = log.refusal(record, now=101.0)
    assert isinstance(refusal, ServiceUnavailableError) and refusal.status_code == 503
    assert refusal.code == "model_load_interrupted" and refusal.param == "model"
    assert refusal.headers == {"retry-after": str(round(TRANSIENT_RETRY_SECONDS - 1))}
    assert refusal.message.startswith(SIGKILL_MESSAGE) and "transient" in refusal.message
    # The back-off is over: the pool loads again (the failure is still on record until a load succeeds).
    assert log.load_failure_for_file("m", 10, 5, now=100.0 + TRANSIENT_RETRY_SECONDS) is None
    assert log.current("m") is record and log.retry_in("m", now=200.0) == 0.0
    log.loaded("m", at=104.0)
    assert log.current("m") is None and log.all()[0].recovered_at == 104.0


def test_transient_failures_in_a_row_double_the_back_off_up_to_a_limit() -> None:
    log = FailureLog()
    waits = []
    for attempt in range(8):
        at = 1000.0 * attempt
        log.load_failed(
            ModelFailure("m", "loading", "killed", at=at, exit_code=-9), 10, 5, crashed=True, transient=True
        )
        waits.append(log.retry_in("m", now=at))
    assert waits == [3.0, 6.0, 12.0, 24.0, 48.0, TRANSIENT_RETRY_MAX_SECONDS, 60.0, 60.0]
    log.load_failed(ModelFailure("m", "loading", "killed", at=0.0, exit_code=-9), 11, 5, crashed=True, transient=True)
    assert log.retry_in("m", now=0.0) == TRANSIENT_RETRY_SECONDS  # a new file starts over


def test_a_deterministic_load_failure_stays_a_500_whatever_the_time() -> None:
    log = FailureLog()
    record = ModelFailure("m", "loading", SIGILL_MESSAGE, at=100.0, exit_code=-4)
    log.load_failed(record, 10, 5, crashed=True)
    assert log.load_failure_for_file("m", 10, 5, now=1e12) is record and log.retry_in("m", now=1e12) is None
    refusal = log.refusal(record, now=1e12)
    assert isinstance(refusal, ModelLoadError) and refusal.headers == {"x-should-retry": "false"}
