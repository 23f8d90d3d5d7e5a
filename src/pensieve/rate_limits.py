"""Per-caller rate limits: requests and tokens per minute, in a moving window (the `limits` library).

A caller is an API key's fingerprint, or the peer address when the server needs no key. Tokens are
counted the way OpenAI counts them, when a request is admitted: its estimated prompt tokens plus
`max_tokens` for every choice it may generate; a request over either limit gets 429 with `Retry-After`
and consumes nothing. Limits apply to generation and embeddings; 0 turns a limit off.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from pensieve.errors import RateLimitedError
from pensieve.settings_sections import ServerSettings

# Roughly four characters of English per token (the same rule the cloud estimate uses).
BYTES_PER_TOKEN = 4


def estimated_prompt_tokens(body_bytes: int) -> int:
    """A prompt's token estimate from its request body's size (every field a model reads is in it)."""
    return max(1, math.ceil(body_bytes / BYTES_PER_TOKEN))


class RateLimiter:
    """Admits or refuses requests per caller; `reconfigure` changes the limits of the running server."""

    def __init__(self, server: ServerSettings) -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        # Test-then-hit of two windows must not interleave with another request's.
        self._lock = threading.Lock()
        self.reconfigure(server)

    def reconfigure(self, server: ServerSettings) -> None:
        """Use the limits of `server` from now on (0 = no limit); what was counted so far stays counted."""
        requests_per_minute, tokens_per_minute = (
            server.rate_limit_requests_per_minute,
            server.rate_limit_tokens_per_minute,
        )
        self.requests = RateLimitItemPerMinute(requests_per_minute) if requests_per_minute > 0 else None
        self.tokens = RateLimitItemPerMinute(tokens_per_minute) if tokens_per_minute > 0 else None

    def admit(self, caller: str, tokens: int) -> None:
        """Count one request of `tokens` tokens for `caller`, or raise RateLimitedError and count nothing."""
        requests, token_limit = self.requests, self.tokens
        if requests is None and token_limit is None:
            return
        with self._lock:
            if token_limit is not None and tokens > token_limit.amount:
                raise RateLimitedError(
                    f"This request needs about {tokens} tokens (prompt estimate plus max_tokens for each choice), "
                    f"more than the {token_limit.amount} tokens per minute this key may use. Lower max_tokens or n, "
                    "or ask for a higher PENSIEVE_RATE_LIMIT_TOKENS_PER_MINUTE.",
                    retry_after_seconds=60,
                    code="rate_limit_exceeded",
                )
            for item, cost, what in ((requests, 1, "requests"), (token_limit, tokens, "tokens")):
                if item is not None and not self._limiter.test(item, caller, cost=cost):
                    raise RateLimitedError(
                        f"Rate limit reached: {item.amount} {what} per minute for this key. "
                        "Try again after the time in the Retry-After header.",
                        retry_after_seconds=self._seconds_until_room(item, caller),
                    )
            for item, cost in ((requests, 1), (token_limit, tokens)):
                if item is not None:
                    self._limiter.hit(item, caller, cost=cost)

    def _seconds_until_room(self, item: RateLimitItemPerMinute, caller: str) -> float:
        """When the oldest counted entry leaves the window (at least one second)."""
        reset_at = self._limiter.get_window_stats(item, caller).reset_time
        return max(1.0, math.ceil(reset_at - time.time()))
