"""Calling binding code safely: a time limit, and every failure re-raised as one of our errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .bindings import Binding
from .errors import BackendError, BackendTimeout, LollmsError
from .trace import in_backend

log = logging.getLogger(__name__)
T = TypeVar("T")


@contextmanager
def binding_errors(binding: Binding, timeout_s: float | None = None) -> Iterator[None]:
    """Re-raise anything a binding throws as one of our errors naming the instance."""
    name = binding.instance_name
    try:
        yield
    except LollmsError as exc:
        exc.binding = exc.binding or name
        raise
    except TimeoutError as exc:
        raise BackendTimeout(
            f"binding {name!r} did not answer within {timeout_s}s", binding=name
        ) from exc
    except Exception as exc:  # third-party binding code: any failure becomes a 502
        log.exception("binding %s failed", name)
        raise BackendError(
            f"binding {name!r} failed: {type(exc).__name__}: {exc}", binding=name
        ) from exc


async def guarded(binding: Binding, awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await a binding call with a time limit, its errors mapped by `binding_errors`."""
    with binding_errors(binding, timeout_s), in_backend(binding.instance_name):
        async with asyncio.timeout(timeout_s):
            return await awaitable
