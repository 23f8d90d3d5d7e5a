"""A circuit breaker per cloud provider: stop calling a provider that keeps failing, probe it once in a while.

States:
- closed: calls go through; consecutive failures are counted and a success resets the count;
- open: after `failure_threshold` consecutive failures (or at once when the provider said `Retry-After`),
  no call goes through until the cool-down (or the Retry-After, whichever is longer) has passed;
- half-open: the cool-down has passed; exactly one probe call is let through. Its success closes the
  circuit, its failure opens it again for another cool-down.

`would_allow()` answers without side effects (routing decisions and `/ready` ask it); `try_acquire()` is
called by the engine right before a real call and claims the single probe slot when half-open. A probe
that ends without a verdict (the client went away) gives its slot back with `release()`.

The clock is injected so the state machine can be unit-tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a cool-down, a single half-open probe and Retry-After."""

    def __init__(
        self,
        failure_threshold: int,
        cooldown_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._times_opened = 0
        self._last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        """closed, open (calls refused) or half_open (the cool-down passed: one probe may go)."""
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    def would_allow(self) -> bool:
        """Whether a call would be let through now (no side effects)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def try_acquire(self) -> bool:
        """Claim the right to call the provider now; in half-open state only the first caller gets it."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def release(self) -> None:
        """Give back a probe slot whose call ended with neither success nor failure (e.g. cancelled)."""
        self._probing = False

    def record_success(self) -> None:
        """A call succeeded: close the circuit and forget past failures."""
        self._failures = 0
        self._open_until = None
        self._probing = False

    def record_failure(self, error: str, *, retry_after_seconds: float | None = None) -> None:
        """A call failed (5xx, timeout, connection lost, 429...); open the circuit when it is time to.

        A provider that sent Retry-After is not called again before it has passed: the circuit opens at
        once, for the longer of the Retry-After and the cool-down.
        """
        self._failures += 1
        self._last_error = error
        was_probing, self._probing = self._probing, False
        if was_probing or retry_after_seconds is not None or self._failures >= self.failure_threshold:
            wait = max(self.cooldown_seconds, retry_after_seconds or 0.0)
            self._open_until = self._clock() + wait
            self._times_opened += 1

    def reset(self) -> None:
        """Close the circuit by hand (an operator knows the provider is back); counts and history restart."""
        self.record_success()
        self._last_error = None

    def retry_in_seconds(self) -> float:
        """Seconds until a probe may go (0 when calls are allowed now)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def snapshot(self) -> dict[str, Any]:
        """The breaker as stats endpoints show it (no secrets: the error is a short summary)."""
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "cooldown_seconds": self.cooldown_seconds,
            "retry_in_seconds": round(self.retry_in_seconds(), 3),
            "times_opened": self._times_opened,
            "last_error": self._last_error,
        }
