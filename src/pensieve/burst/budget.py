"""Budget reservations: a cloud call's estimated cost is held against the caps from its plan to its end.

Spend is only known once a call ends, so without holding anything twenty concurrent requests (or one with
n=20) planned while the ledger still says $0 would all pass a nearly spent cap. The planner reserves each
cloud run's estimated cost at the moment it decides (no await in between, so the event loop cannot let
another plan see the old total), the policy compares spent + reserved with the caps, and each recorded
cloud run consumes its actual cost from the reservation; whatever remains is released when the request
ends. Hence the overshoot is bounded by what one request spends beyond its own estimate plus the one
request admitted just under the cap.
"""

from __future__ import annotations

import threading


class Reservations:
    """The sum of the estimated costs of the cloud runs in flight (USD), shared by every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0.0

    @property
    def total_usd(self) -> float:
        """What the requests in flight may still spend."""
        with self._lock:
            return max(0.0, self._total)

    def reserve(self, amount_usd: float) -> Reservation:
        """Hold `amount_usd` until the returned reservation is consumed or released."""
        amount = max(0.0, amount_usd)
        with self._lock:
            self._total += amount
        return Reservation(self, amount)

    def _give_back(self, amount_usd: float) -> None:
        with self._lock:
            self._total -= amount_usd
            if self._total < 1e-12:
                self._total = 0.0  # no float dust left behind once nothing is in flight


class Reservation:
    """One request's hold on the budget: shrinks as its runs record their cost, released at its end."""

    def __init__(self, owner: Reservations, amount_usd: float) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self.remaining_usd = amount_usd

    def consume(self, cost_usd: float) -> None:
        """A run of this request recorded `cost_usd` in the ledger: that much is no longer only reserved."""
        with self._lock:
            taken = min(self.remaining_usd, max(0.0, cost_usd))
            self.remaining_usd -= taken
        self._owner._give_back(taken)

    def release(self) -> None:
        """The request is over: give back what it did not spend (idempotent)."""
        with self._lock:
            left, self.remaining_usd = self.remaining_usd, 0.0
        self._owner._give_back(left)
