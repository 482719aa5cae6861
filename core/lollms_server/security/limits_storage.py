"""Where rate limits are counted (a `limits` storage URI) and what a request meets when that
storage cannot be reached: `allow` (the default: it passes unlimited, and a warning is logged)
or `refuse` (503 `rate_limits_unavailable`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

from limits.aio.storage import Storage
from limits.errors import ConfigurationError, StorageError
from limits.storage import storage_from_string

from ..circuit import CircuitBreaker
from ..errors import ConfigError, RateLimitsUnavailable
from ..masking import mask_text, mask_url

log = logging.getLogger(__name__)
OnStorageError = Literal["allow", "refuse"]
ON_STORAGE_ERROR: tuple[OnStorageError, ...] = ("allow", "refuse")
REDIS_SCHEMES = ("async+redis", "async+rediss", "async+redis+unix")
REDIS_TIMEOUT_S = 1.0  # a Redis that hangs costs a request at most this long, per call
SKIP_S = 1.0  # after a timeout, calls skip the storage this long; then one call tries it
WARN_EVERY_S = 10.0


class Skipped(ConnectionError):
    """The storage was not called: it timed out within the last SKIP_S (`StorageFailures`)."""


def timed_out(exc: BaseException) -> bool:
    """Whether `exc` is a timeout: the builtin one or redis-py's (which does not derive from
    it; redis is an optional extra, so it is matched by name)."""
    return any(cls.__name__ == "TimeoutError" for cls in type(exc).__mro__)


class LimitsSettings(Protocol):
    """The `[security]` settings that name the storage (`config_sections.SecurityConfig`)."""

    @property
    def rate_limit_storage(self) -> str:
        """The storage URI."""

    @property
    def rate_limit_storage_env(self) -> str | None:
        """The variable that holds the URI instead, if any."""


def limits_uri(security: LimitsSettings) -> str:
    """`[security] rate_limit_storage_env`'s variable (checked like the setting), else
    `rate_limit_storage`; ConfigError when the variable is unset or its URI unusable."""
    if not security.rate_limit_storage_env:
        return security.rate_limit_storage
    name = security.rate_limit_storage_env
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"[security] rate_limit_storage_env names {name}, but it is not set")
    try:
        open_storage(value)
    except (ConfigurationError, ValueError) as exc:
        raise ConfigError(
            f"[security] rate_limit_storage_env: {name} is not a usable async `limits` "
            f"storage: {mask_text(str(exc))}"
        ) from exc
    return value


def open_storage(uri: str) -> Storage:
    """The async `limits` storage of `uri`; Redis through redis-py (the `redis` extra), with
    short timeouts; failures surface as `limits.errors.StorageError`."""
    options: dict[str, Any] = {"wrap_exceptions": True}
    if uri.partition("://")[0] in REDIS_SCHEMES:
        options |= {
            "implementation": "redispy",
            "socket_timeout": REDIS_TIMEOUT_S,
            "socket_connect_timeout": REDIS_TIMEOUT_S,
        }
    storage = storage_from_string(uri, **options)
    if not isinstance(storage, Storage):
        raise ValueError(f"{mask_url(uri)} is not an async storage (its URI starts with async+)")
    return storage


def is_shared(uri: str) -> bool:
    """Whether the storage is shared between processes (anything but `async+memory://`)."""
    return not uri.startswith("async+memory")


class StorageFailures:
    """Applies `[security] rate_limit_on_storage_error` when the limits storage fails."""

    def __init__(
        self, uri: str, policy: OnStorageError, on_failure: Callable[[], None] | None = None
    ) -> None:
        self.where = mask_url(uri)
        self.policy = policy
        self.on_failure = on_failure or (lambda: None)
        self._warned_at = -WARN_EVERY_S
        # a call that timed out opens it for SKIP_S; then one trial at a time calls the storage
        # while the others skip it, until one answers (as `PostgresStore` does for a statement)
        self.hung = CircuitBreaker(
            self.where, failure_threshold=1, window_s=SKIP_S, cooldown_s=SKIP_S
        )

    @contextmanager
    def calling(self) -> Iterator[None]:
        """Guard the storage calls of the block: raise StorageError(Skipped) without running it
        while the storage is skipped, so that a storage that hangs costs one timeout, not one
        per call; a timeout in the block opens `hung`, an answer closes it."""
        if not self.hung.allows():
            raise StorageError(Skipped(f"skipped: it timed out within the last {SKIP_S:g} s"))
        trial = self.hung.state == "half_open"
        try:
            yield
        except StorageError as exc:
            if timed_out(exc.storage_error):  # a refused connection fails fast: not skipped
                self.hung.failure("timeout")
            raise
        finally:
            if trial:  # answered, failed or cancelled: the next call may be the trial
                self.hung.end_trial()
        self.hung.success()

    def failed(self, exc: Exception) -> None:
        """Count and log (at most every WARN_EVERY_S) a storage failure; raise
        RateLimitsUnavailable under the `refuse` policy, else return (the request passes)."""
        self.on_failure()
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            outcome = (
                "requests are refused (503)"
                if self.policy == "refuse"
                else "requests pass without rate limits"
            )
            log.warning(
                "rate limit storage %s failed (%s: %s); %s until it answers "
                "([security] rate_limit_on_storage_error = %r)",
                self.where, type(exc).__name__, mask_text(str(exc)), outcome, self.policy,
            )  # fmt: skip
        if self.policy == "refuse":
            raise RateLimitsUnavailable(
                f"the rate limit storage ({self.where}) cannot be reached; retry shortly",
                retry_after=5.0,
            )
