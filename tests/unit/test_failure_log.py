"""The pool's memory of failed models: load failures tied to their file, last crashes kept after recovery."""

from __future__ import annotations

from pensieve.engine.failures import FailureLog, ModelFailure

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
