"""Resilience helpers: the retry policy for calls to backends (tenacity), Retry-After parsing.

A retry is only ever safe before anything of the answer was consumed: callers raise
`Retryable` (or one of their own `retry_on` types) for failures that happened before the
first byte, and never retry once a response body is being read.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)


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
    once (with its delay) so the caller can report it instead of hanging.
    """

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0

    def retrying(self, retry_on: tuple[type[BaseException], ...] = ()) -> AsyncRetrying:
        """An `AsyncRetrying` that retries `Retryable` and `retry_on` errors, then re-raises."""
        kinds: tuple[type[BaseException], ...] = (Retryable, *retry_on)

        def worth_retrying(exc: BaseException) -> bool:
            if not isinstance(exc, kinds):
                return False
            delay = getattr(exc, "retry_after", None)
            return delay is None or delay <= self.max_retry_after_s

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = getattr(exc, "retry_after", None)
            if isinstance(delay, (int, float)):
                return float(min(max(delay, 0.0), self.max_retry_after_s))
            doubled = self.backoff_s * 2.0 ** max(0, state.attempt_number - 1)
            return min(doubled, self.max_backoff_s) + random.uniform(0, self.backoff_s / 2)

        return AsyncRetrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait,
            reraise=True,
        )


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
