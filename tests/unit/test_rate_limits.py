"""Per-caller rate limits (rate_limits.py) with the real `limits` moving window."""

from __future__ import annotations

import pytest

from pensieve.errors import RateLimitedError
from pensieve.rate_limits import RateLimiter, estimated_prompt_tokens
from pensieve.settings_sections import ServerSettings


def _limiter(requests: int = 0, tokens: int = 0) -> RateLimiter:
    return RateLimiter(ServerSettings(rate_limit_requests_per_minute=requests, rate_limit_tokens_per_minute=tokens))


def test_no_limits_admit_everything() -> None:
    limiter = _limiter()
    for _ in range(1000):
        limiter.admit("key:a", 10**6)


def test_requests_per_minute_per_caller_with_retry_after() -> None:
    limiter = _limiter(requests=3)
    for _ in range(3):
        limiter.admit("key:a", 1)
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("key:a", 1)
    assert refused.value.status_code == 429
    assert 1 <= int(refused.value.headers["retry-after"]) <= 60
    assert "3 requests per minute" in refused.value.message
    limiter.admit("key:b", 1)  # another key has its own window


def test_tokens_per_minute_count_at_admission_and_a_refusal_counts_nothing() -> None:
    limiter = _limiter(requests=100, tokens=1000)
    limiter.admit("key:a", 600)
    with pytest.raises(RateLimitedError, match="1000 tokens per minute"):
        limiter.admit("key:a", 600)
    limiter.admit("key:a", 400)  # the refused request consumed neither a request nor tokens
    with pytest.raises(RateLimitedError):
        limiter.admit("key:a", 1)


def test_a_request_larger_than_the_whole_limit_says_so() -> None:
    with pytest.raises(RateLimitedError, match="needs about 5000 tokens"):
        _limiter(tokens=1000).admit("key:a", 5000)


def test_reconfigure_changes_the_limits_live() -> None:
    limiter = _limiter(requests=1)
    limiter.admit("key:a", 1)
    with pytest.raises(RateLimitedError):
        limiter.admit("key:a", 1)
    limiter.reconfigure(ServerSettings())
    limiter.admit("key:a", 1)


def test_prompt_estimate() -> None:
    assert estimated_prompt_tokens(0) == 1
    assert estimated_prompt_tokens(4000) == 1000
