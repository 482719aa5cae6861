"""Rate limits with the `limits` library: requests/minute per key and per IP, tokens/minute
per key, concurrent generations per key. Storage is a `limits` URI: `async+memory://` counts in
this process; `async+redis://host:port` shares the request and token counts between replicas
(limits_storage says what happens when Redis cannot be reached). Concurrency slots are always
this process's own.

Tokens are reserved before a generation starts (`reserve_tokens`: its `max_tokens` plus an
estimate of its prompt) and settled with the real count when it ends (`settle`). Reservations are
one counter per key in the same storage (so every replica sees all of them). A request is
admitted while the window's settled tokens plus the reservations made before it are under the
limit, so parallel requests, on one replica or several, cannot all pass an unspent budget: a
window serves at most the limit plus one request's tokens. The counter forgets itself
RESERVATION_TTL_S after it was created, so the reservations of a replica killed mid-generation
do not hold a key back for longer; a generation that outlived it gives back no more than the
new counter holds (it never goes below zero, which would admit every later burst that much).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from ..bindings import Binding, GenerationRequest
from ..errors import RateLimited, RateLimitsUnavailable
from .limits_storage import OnStorageError, StorageFailures, open_storage
from .principal import Principal

if TYPE_CHECKING:
    from ..registry import Target

FALLBACK_MAX_TOKENS = 4096  # reserved for a text request when neither it nor its binding caps it
CHARS_PER_TOKEN = 4  # the prompt estimate of a reservation (the settlement uses the real count)
RESERVATION_TTL_S = 300
TOKEN_PARAMETERS = ("max_tokens", "n_predict")
MAX_LEARNED = 1024  # models whose hidden prompt tokens are kept


@dataclass
class Reservation:
    """Tokens held against a key's budget until `settle` charges what was really used."""

    key_id: str | None  # None: no token limit applies (no key, or no tpm)
    limit: int = 0
    tokens: int = 0
    settled: bool = False


def _reserved(key_id: str) -> str:
    """The storage counter of a key's open token reservations."""
    return f"lollms/reserved/{key_id}"


def tokens_to_reserve(request: GenerationRequest, binding: Binding) -> int:
    """What a text generation may use: its `max_tokens` (else its binding's
    `default_max_tokens`, else FALLBACK_MAX_TOKENS) plus its prompt at CHARS_PER_TOKEN (the
    caller adds the model's `hidden_prompt`: a chat template's tokens)."""
    if request.generation_type != "ttt":
        return 0
    asked = [request.parameters.get(name) for name in TOKEN_PARAMETERS]
    caps = [v for v in asked if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    default = getattr(binding, "default_max_tokens", None)
    cap = caps[0] if caps else default if isinstance(default, int) and default > 0 else None
    return (cap or FALLBACK_MAX_TOKENS) + prompt_estimate(request)


def prompt_estimate(request: GenerationRequest) -> int:
    """The prompt's tokens by its messages' characters (CHARS_PER_TOKEN)."""
    return text_tokens([message.content for message in request.messages])


def text_tokens(texts: Sequence[str]) -> int:
    """What work on `texts` that is no generation (embeddings) is charged: CHARS_PER_TOKEN."""
    return -(-sum(len(text) for text in texts) // CHARS_PER_TOKEN)


class RateLimiter:
    """Checks and counts requests per address and key, token budgets and concurrency."""

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
        on_storage_error: OnStorageError = "allow",
        on_storage_failure: Callable[[], None] | None = None,
    ) -> None:
        self.storage = open_storage(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.failures = StorageFailures(storage_uri, on_storage_error, on_storage_failure)
        self.ip_rpm = ip_rpm
        self.key_rpm = key_rpm
        self.key_tpm = key_tpm
        self.key_concurrent = key_concurrent
        self.window_s = window_s
        self.active: Counter[str] = Counter()
        # per (instance, model): prompt tokens its last answer had beyond `prompt_estimate`
        # (a chat template's system prompt and role markers), added to its reservations
        self.hidden_prompt: dict[tuple[str, str], int] = {}
        self._token_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.on_reject = on_reject or (lambda: None)

    def _item(self, amount: int) -> RateLimitItem:
        """`amount` per window (a minute unless configured otherwise)."""
        return RateLimitItemPerSecond(amount, self.window_s)

    def _who(self, principal: Principal) -> str:
        return principal.key_id or f"ip:{principal.client}"

    async def check_address(self, client: str) -> dict[str, str]:
        """Count one request from `client` (any request, with a key or not) against `ip_rpm`;
        raise RateLimited past it; return X-RateLimit-* headers."""
        headers: dict[str, str] = {}
        if self.ip_rpm:
            await self._hit(self._item(self.ip_rpm), "ip", client, headers)
        return headers

    async def check_key(self, principal: Principal) -> dict[str, str]:
        """Count one request of the principal's key against its rpm; X-RateLimit-* headers."""
        headers: dict[str, str] = {}
        rpm = principal.rpm or self.key_rpm
        if rpm and principal.key_id:
            await self._hit(self._item(rpm), "key", principal.key_id, headers)
        return headers

    async def _hit(self, item: RateLimitItem, kind: str, who: str, headers: dict[str, str]) -> None:
        try:
            with self.failures.calling():
                allowed = await self.limiter.hit(item, kind, who)
                stats = await self.limiter.get_window_stats(item, kind, who)
        except StorageError as exc:
            self.failures.failed(exc.storage_error)  # raises under the `refuse` policy
            return
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

    def learn_prompt(
        self, instance: str, model: str, request: GenerationRequest, prompt_tokens: int
    ) -> None:
        """Keep how many prompt tokens the model counted beyond the estimate (never below 0)."""
        if request.generation_type != "ttt":
            return
        if len(self.hidden_prompt) >= MAX_LEARNED and (instance, model) not in self.hidden_prompt:
            self.hidden_prompt.clear()  # only models that answered get here: a rare reset
        self.hidden_prompt[(instance, model)] = max(0, prompt_tokens - prompt_estimate(request))

    def template_tokens(self, target: Target) -> int:
        """The prompt tokens a chat template adds for `target`: the most any of its candidates
        (a route's targets) showed, since any of them may serve the request."""
        candidates = (target, *target.fallbacks)
        return max(
            self.hidden_prompt.get((t.binding.instance_name, t.model), 0) for t in candidates
        )

    def _token_lock(self, key_id: str) -> asyncio.Lock:
        lock = self._token_locks.get(key_id)
        if lock is None:
            lock = self._token_locks[key_id] = asyncio.Lock()
        return lock

    async def reserve_tokens(self, principal: Principal, tokens: int) -> Reservation:
        """Hold `tokens` of the key's per-window budget; RateLimited when it is spent (its
        settled tokens plus open reservations reach the limit). Always `settle` the result."""
        tpm = principal.tpm or self.key_tpm
        key_id = principal.key_id
        if not tpm or not key_id:
            return Reservation(None)
        item, tokens = self._item(tpm), max(tokens, 0)
        async with self._token_lock(key_id):
            try:
                with self.failures.calling():
                    stats = await self.limiter.get_window_stats(item, "tokens", key_id)
                    held = await self.storage.incr(_reserved(key_id), RESERVATION_TTL_S, tokens)
            except StorageError as exc:
                self.failures.failed(exc.storage_error)
                return Reservation(None)
            held_before = max(held - tokens, 0)
            if tpm - stats.remaining + held_before >= tpm:
                await self._release(key_id, tokens)
                self.on_reject()
                window_reset = max(0.0, stats.reset_time - time.time())
                reset_in = window_reset if stats.remaining <= 0 else 1.0
                error = RateLimited(
                    f"token limit of {tpm} tokens per {self.window_s} s reached",
                    retry_after=min(max(reset_in, 1.0), float(self.window_s)),
                )
                error.details = {"limit": tpm, "per": "tokens"}
                error.extra_headers = {  # OpenAI's names for a token budget
                    "X-RateLimit-Limit-Tokens": str(tpm),
                    "X-RateLimit-Remaining-Tokens": str(max(0, stats.remaining - held_before)),
                    "X-RateLimit-Reset-Tokens": str(round(window_reset, 3)),
                }
                raise error
        return Reservation(key_id, tpm, tokens)

    async def _release(self, key_id: str, tokens: int) -> None:
        """Give `tokens` of a reservation back (a storage failure is reported, never raised)."""
        try:
            with self.failures.calling():
                held = await self.storage.incr(_reserved(key_id), RESERVATION_TTL_S, -tokens)
                if held < 0:  # the counter expired under this reservation: back to none held
                    await self.storage.incr(_reserved(key_id), RESERVATION_TTL_S, -held)
        except StorageError as exc:
            with contextlib.suppress(RateLimitsUnavailable):
                self.failures.failed(exc.storage_error)

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Release a reservation and charge the `used` tokens instead (once; later calls are
        ignored). The window keeps at most the limit: an overshoot ends at the next window."""
        if reservation.key_id is None or reservation.settled:
            return
        reservation.settled = True
        # shielded: a client that leaves again while this runs must not leak the reservation
        await asyncio.shield(self._settle(reservation.key_id, reservation, used))

    async def _settle(self, key_id: str, reservation: Reservation, used: int) -> None:
        item = self._item(reservation.limit)
        async with self._token_lock(key_id):
            # charged before released: another request sees one or both, never neither
            if used > 0:
                try:
                    with self.failures.calling():
                        stats = await self.limiter.get_window_stats(item, "tokens", key_id)
                        cost = min(used, stats.remaining)
                        if cost > 0:
                            await self.limiter.hit(item, "tokens", key_id, cost=cost)
                except StorageError as exc:
                    with contextlib.suppress(RateLimitsUnavailable):  # the answer is sent
                        self.failures.failed(exc.storage_error)
            await self._release(key_id, reservation.tokens)

    def take_slot(self, principal: Principal) -> str:
        """Take one of the key's concurrent-generation slots (RateLimited when none is free);
        `give_slot` gives it back."""
        limit = principal.max_concurrent or self.key_concurrent
        who = self._who(principal)
        if limit and principal.key_id and self.active[who] >= limit:
            self.on_reject()
            raise RateLimited(
                f"this key already runs {limit} generation(s) at once", retry_after=1.0
            )
        self.active[who] += 1
        return who

    def give_slot(self, who: str) -> None:
        """Give back the slot `take_slot` took for `who`."""
        self.active[who] -= 1

    @contextlib.asynccontextmanager
    async def slot(self, principal: Principal) -> AsyncIterator[None]:
        """One of the key's concurrent slots for the block (`take_slot`, `give_slot`)."""
        who = self.take_slot(principal)
        try:
            yield
        finally:
            self.give_slot(who)

    @contextlib.asynccontextmanager
    async def text_work(self, principal: Principal, texts: Sequence[str]) -> AsyncIterator[None]:
        """Work on text that is no generation (embeddings): one of the key's concurrent slots,
        and the texts (`text_tokens`) charged to its token budget when the work succeeds."""
        tokens = text_tokens(texts)
        reservation = await self.reserve_tokens(principal, tokens)
        used = 0
        try:
            async with self.slot(principal):
                yield
                used = tokens
        finally:
            await self.settle(reservation, used)
