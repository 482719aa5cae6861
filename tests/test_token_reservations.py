"""A key's counter of open token reservations (`RateLimiter`, real `limits` memory storage)."""

from __future__ import annotations

import asyncio

import pytest

from lollms_server.errors import RateLimited
from lollms_server.security import ratelimit
from lollms_server.security.principal import Principal


async def admitted(limiter: ratelimit.RateLimiter, principal: Principal, each: int) -> int:
    """How many reservations of `each` tokens a burst gets before the first refusal."""
    count = 0
    for _ in range(50):
        try:
            await limiter.reserve_tokens(principal, each)
        except RateLimited:
            return count
        count += 1
    return count


async def test_a_counter_that_expired_under_a_long_generation_never_goes_negative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counter forgets itself RESERVATION_TTL_S after it was made; a generation that ran
    longer then gave back tokens the new counter never held. Before, it went negative and
    stayed so (no expiry is set again below zero), and every later burst of the key was
    admitted that much more: 6 x 30 tokens on a 100-token budget instead of 4."""
    monkeypatch.setattr(ratelimit, "RESERVATION_TTL_S", 1)
    limiter = ratelimit.RateLimiter()
    key = Principal(role="user", key_id="0123456789ab", tpm=100)
    long = await limiter.reserve_tokens(key, 60)  # a long generation
    await asyncio.sleep(1.2)  # the counter expires under it
    short = await limiter.reserve_tokens(key, 10)
    await limiter.settle(short, 0)
    await limiter.settle(long, 0)
    assert await limiter.storage.get(ratelimit._reserved(key.key_id or "")) >= 0
    assert await admitted(limiter, key, 30) == 4  # held before each: 0, 30, 60, 90
