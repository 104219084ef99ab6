"""The per-caller rate limiter: limits each caller, and holds bounded memory however many callers come."""

from __future__ import annotations

import pytest

from docground.api.auth import RateLimiter
from docground.errors import RateLimited


def test_a_caller_is_limited_and_others_are_not():
    limiter = RateLimiter(per_minute=3)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")
    limiter.check("b")


def test_memory_stays_bounded_under_many_callers():
    limiter = RateLimiter(per_minute=5, max_callers=100)
    for n in range(5_000):
        limiter.check(f"caller-{n}")
    assert len(limiter) <= 100

