"""Resilience helpers: the retry policy for calls to backends (tenacity), Retry-After parsing.

A retry is only ever safe before anything of the answer was consumed: callers raise
`Retryable` (or one of their own `retry_on` types) for failures that happened before the
first byte, and never retry once a response body is being read.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

T = TypeVar("T")
#: True while a route's attempt has another target to hand over to: a backend's Retry-After is
#: then not waited for (the failure is raised at once and the next target serves).
FALLBACK_REMAINS: ContextVar[bool] = ContextVar("lollms_fallback_remains", default=False)


class Retryable(Exception):
    """A failure worth another attempt (429, 5xx before any byte); may carry Retry-After."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: `attempts` in all, backoff doubling up to a cap.

    A Retry-After longer than `max_retry_after_s` is not waited for: the failure is raised at
    once (with its delay) so the caller can report it instead of hanging. Nor is any
    Retry-After while FALLBACK_REMAINS: a route's next target serves instead; nor is a refused
    connection then retried (nothing listens: the backend is down, and the next target serves
    at once rather than after a backoff).
    """

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0

    def worth_retrying(self, exc: BaseException, retry_on: tuple[type[BaseException], ...]) -> bool:
        """A `Retryable` or `retry_on` failure whose Retry-After (if any) is short enough, and
        not to be waited for at all while a route's next target could serve instead."""
        if not isinstance(exc, (Retryable, *retry_on)):
            return False
        if FALLBACK_REMAINS.get() and refused_connection(exc):
            return False
        delay = getattr(exc, "retry_after", None)
        if delay is not None and FALLBACK_REMAINS.get():
            return False
        return delay is None or delay <= self.max_retry_after_s

    def delay_after(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to wait after failed attempt `attempt_number`: Retry-After, else backoff."""
        delay = getattr(exc, "retry_after", None)
        if isinstance(delay, (int, float)):
            return float(min(max(delay, 0.0), self.max_retry_after_s))
        doubled = self.backoff_s * 2.0 ** max(0, attempt_number - 1)
        return min(doubled, self.max_backoff_s) + random.uniform(0, self.backoff_s / 2)

    def retrying(
        self, retry_on: tuple[type[BaseException], ...] = (), *, done: int = 0
    ) -> AsyncRetrying:
        """An `AsyncRetrying` for the attempts left after `done`, re-raising the last failure."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay_after(exc, state.attempt_number + done)

        return AsyncRetrying(
            retry=retry_if_exception(lambda exc: self.worth_retrying(exc, retry_on)),
            stop=stop_after_attempt(max(1, self.attempts - done)),
            wait=wait,
            reraise=True,
        )

    async def call(
        self,
        attempt: Callable[[], Awaitable[T]],
        retry_on: tuple[type[BaseException], ...] = (),
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Run `attempt`; only after a failure worth retrying does tenacity run the rest (a
        first try that succeeds, the common case, costs no retry machinery)."""
        try:
            return await attempt()
        except Exception as exc:
            if self.attempts <= 1 or not self.worth_retrying(exc, retry_on):
                raise
            first = exc
        await asyncio.sleep(self.delay_after(first, 1))
        async for state in self.retrying(retry_on, done=1):
            if on_retry is not None:
                on_retry()
            with state:
                return await attempt()
        raise AssertionError("unreachable: tenacity re-raises the last failure")


def refused_connection(exc: BaseException) -> bool:
    """Whether `exc` is a refused connection (ECONNREFUSED: nothing listens; no work started)."""
    return isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
