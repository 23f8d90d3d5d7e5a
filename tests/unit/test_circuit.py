"""The circuit breaker's state machine, driven by an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from pensieve.cloud.circuit import CircuitBreaker


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, failures: int = 3, cooldown: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failures, cooldown, clock=clock)


def test_opens_after_consecutive_failures_only(clock: Clock) -> None:
    circuit = breaker(clock)
    circuit.record_failure("HTTP 500")
    circuit.record_failure("HTTP 500")
    circuit.record_success()  # resets the count: failures must be consecutive
    circuit.record_failure("HTTP 500")
    circuit.record_failure("HTTP 500")
    assert circuit.state == "closed" and circuit.try_acquire()
    circuit.record_failure("timed out")
    assert circuit.state == "open"
    assert not circuit.would_allow() and not circuit.try_acquire()
    assert circuit.snapshot()["last_error"] == "timed out"
    assert circuit.retry_in_seconds() == pytest.approx(30.0)


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    circuit = breaker(clock, failures=1, cooldown=10)
    circuit.record_failure("HTTP 503")
    clock.now += 9.9
    assert circuit.state == "open" and not circuit.would_allow()
    clock.now += 0.2
    assert circuit.state == "half_open" and circuit.would_allow()
    assert circuit.try_acquire()
    # While the probe is out, nobody else gets through (no retry storm).
    assert not circuit.would_allow() and not circuit.try_acquire()
    circuit.record_success()
    assert circuit.state == "closed" and circuit.try_acquire()
    assert circuit.snapshot()["consecutive_failures"] == 0


def test_failed_probe_reopens_for_another_cooldown(clock: Clock) -> None:
    circuit = breaker(clock, failures=2, cooldown=5)
    circuit.record_failure("x")
    circuit.record_failure("x")
    clock.now += 5
    assert circuit.try_acquire()
    circuit.record_failure("still down")
    assert circuit.state == "open"
    assert circuit.retry_in_seconds() == pytest.approx(5)
    assert circuit.snapshot()["times_opened"] == 2


def test_cancelled_probe_gives_its_slot_back(clock: Clock) -> None:
    circuit = breaker(clock, failures=1, cooldown=1)
    circuit.record_failure("x")
    clock.now += 1
    assert circuit.try_acquire()
    circuit.release()
    assert circuit.would_allow() and circuit.try_acquire()


def test_retry_after_opens_at_once_for_the_longer_wait(clock: Clock) -> None:
    circuit = breaker(clock, failures=5, cooldown=2)
    circuit.record_failure("HTTP 429", retry_after_seconds=3)
    assert circuit.state == "open"
    clock.now += 2.5  # past the cool-down, not past Retry-After
    assert circuit.state == "open"
    clock.now += 0.6
    assert circuit.state == "half_open"
    short = breaker(clock, failures=5, cooldown=10)
    short.record_failure("HTTP 429", retry_after_seconds=1)
    clock.now += 5
    assert short.state == "open"  # the cool-down is the floor


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, 0.0)])
def test_rejects_nonsense_configuration(failures: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures, cooldown)
