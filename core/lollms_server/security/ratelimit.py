"""Rate limits with the `limits` library: requests/minute per key and per IP, tokens/minute
per key, concurrent generations per key. Storage is a `limits` URI (`async+memory://` here;
`async+redis://host` lets several servers share limits)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ..errors import RateLimited
from .principal import Principal


class RateLimiter:
    """Checks and counts a principal's requests, tokens and concurrent generations."""

    def __init__(
        self,
        storage_uri: str = "async+memory://",
        *,
        ip_rpm: int = 0,
        key_rpm: int = 0,
        key_tpm: int = 0,
        key_concurrent: int = 0,
        window_s: int = 60,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.ip_rpm = ip_rpm
        self.key_rpm = key_rpm
        self.key_tpm = key_tpm
        self.key_concurrent = key_concurrent
        self.window_s = window_s
        self.active: Counter[str] = Counter()
        self.on_reject = on_reject or (lambda: None)

    def _item(self, amount: int) -> RateLimitItem:
        """`amount` per window (a minute unless configured otherwise)."""
        return RateLimitItemPerSecond(amount, self.window_s)

    def _who(self, principal: Principal) -> str:
        return principal.key_id or f"ip:{principal.client}"

    async def check_request(self, principal: Principal) -> dict[str, str]:
        """Count one request; raise RateLimited past a limit; return X-RateLimit-* headers."""
        headers: dict[str, str] = {}
        if self.ip_rpm and not principal.local:
            await self._hit(self._item(self.ip_rpm), "ip", principal.client, headers)
        rpm = principal.rpm or self.key_rpm
        if rpm and principal.key_id:
            await self._hit(self._item(rpm), "key", principal.key_id, headers)
        return headers

    async def _hit(self, item: RateLimitItem, kind: str, who: str, headers: dict[str, str]) -> None:
        allowed = await self.limiter.hit(item, kind, who)
        stats = await self.limiter.get_window_stats(item, kind, who)
        reset_in = max(0.0, stats.reset_time - time.time())
        headers.update(
            {
                "X-RateLimit-Limit": str(item.amount),
                "X-RateLimit-Remaining": str(max(0, stats.remaining)),
                "X-RateLimit-Reset": str(round(reset_in, 3)),
            }
        )
        if not allowed:
            self.on_reject()
            error = RateLimited(
                f"rate limit of {item.amount} requests per {self.window_s} s per {kind} reached",
                retry_after=max(reset_in, 1.0),
            )
            error.details = {"limit": item.amount, "per": kind}
            error.extra_headers = headers
            raise error

    async def check_tokens(self, principal: Principal) -> None:
        """Raise RateLimited when the key's tokens-per-minute budget is spent."""
        tpm = principal.tpm or self.key_tpm
        if not tpm or not principal.key_id:
            return
        item = self._item(tpm)
        if not await self.limiter.test(item, "tokens", principal.key_id):
            stats = await self.limiter.get_window_stats(item, "tokens", principal.key_id)
            self.on_reject()
            raise RateLimited(
                f"token limit of {tpm} tokens per {self.window_s} s reached",
                retry_after=max(stats.reset_time - time.time(), 1.0),
            )

    async def add_tokens(self, principal: Principal, tokens: int) -> None:
        """Count tokens a generation used against the key's per-minute budget."""
        tpm = principal.tpm or self.key_tpm
        if tpm and principal.key_id and tokens > 0:
            item = self._item(tpm)
            await self.limiter.hit(item, "tokens", principal.key_id, cost=min(tokens, tpm))

    @asynccontextmanager
    async def generation_slot(self, principal: Principal) -> AsyncIterator[None]:
        """Hold one of the key's concurrent-generation slots; RateLimited when none is free."""
        limit = principal.max_concurrent or self.key_concurrent
        who = self._who(principal)
        if limit and principal.key_id and self.active[who] >= limit:
            self.on_reject()
            raise RateLimited(
                f"this key already runs {limit} generation(s) at once", retry_after=1.0
            )
        self.active[who] += 1
        try:
            yield
        finally:
            self.active[who] -= 1
