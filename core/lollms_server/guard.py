"""Calling binding code safely: a time limit, and every failure re-raised as one of our errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .bindings import Binding
from .errors import BackendError, BackendTimeout, LollmsError
from .trace import add_backend_time

log = logging.getLogger(__name__)
T = TypeVar("T")


@contextmanager
def binding_errors(binding: Binding, timeout_s: float | None = None) -> Iterator[None]:
    """Re-raise anything a binding throws as one of our errors naming the instance."""
    try:
        yield
    except Exception as exc:
        error = binding_failure(binding, exc, timeout_s)
        if error is exc:
            raise
        raise error from exc


def binding_failure(binding: Binding, exc: Exception, timeout_s: float | None) -> LollmsError:
    """What a binding's exception becomes: our own error naming the instance (a 504 for a
    timeout; any other failure of third-party code a 502, logged)."""
    name = binding.instance_name
    if isinstance(exc, LollmsError):
        exc.binding = exc.binding or name
        return exc
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"binding {name!r} did not answer within {timeout_s}s", binding=name)
    log.error("binding %s failed", name, exc_info=exc)
    return BackendError(f"binding {name!r} failed: {type(exc).__name__}: {exc}", binding=name)


async def guarded(binding: Binding, awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await a binding call with a time limit, errors mapped as by `binding_errors`."""
    started = time.perf_counter()
    try:
        try:
            async with asyncio.timeout(timeout_s):
                return await awaitable
        finally:
            add_backend_time(binding.instance_name, started)
    except Exception as exc:
        error = binding_failure(binding, exc, timeout_s)
        if error is exc:
            raise
        raise error from exc
