"""Health checks of binding instances, bounded in time and never raising."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing
import weakref
from collections.abc import Iterable

from .bindings import Binding, Health, HealthState
from .guard import BINDING_FAILURES, SharedCalls, shared_call
from .masking import text_for_current_caller

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 5.0
HEALTH_STATES = typing.get_args(HealthState)  # up, degraded, down
# instance -> why its startup() failed; its health says so until a restart() succeeds
_startup_failures: weakref.WeakKeyDictionary[Binding, str] = weakref.WeakKeyDictionary()
# the health checks under way, which every caller that asks meanwhile shares
_checks: SharedCalls[Health] = weakref.WeakKeyDictionary()


def startup_failed(binding: Binding, why: str | None) -> None:
    """Remember why `binding.startup()` (or a `restart()`) failed; None: it succeeded."""
    if why is None:
        _startup_failures.pop(binding, None)
    else:
        _startup_failures[binding] = why


async def check(binding: Binding, timeout_s: float = HEALTH_TIMEOUT_S) -> Health:
    """The instance's health, `down` if the check times out or breaks its no-raise promise;
    after a failed startup at best `degraded`, saying why (a binding's own health() may not
    know that its startup failed). Callers that ask while a check is under way share it: a
    flood of dashboards or `list_active_bindings` is one call to the backend at a time, never
    one each with the server's own credentials (a provider's rate limit)."""
    call = shared_call(_checks, binding, lambda: _checked(binding, timeout_s))
    health = await asyncio.shield(call)  # a caller that leaves does not cancel the others'
    failed = _startup_failures.get(binding)
    if failed is None:
        return health
    detail = f"startup failed: {failed}" + (f"; {health.detail}" if health.detail else "")
    state: HealthState = "down" if health.state == "down" else "degraded"
    return Health(state, detail, health.latency_ms, health.restartable)


async def _checked(binding: Binding, timeout_s: float) -> Health:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            health = await binding.health()
    except TimeoutError:
        return Health("down", f"health check timed out after {timeout_s}s", timeout_s * 1000)
    except BINDING_FAILURES as exc:  # a binding broke its no-raise promise
        log.warning("health() of %s raised %r", binding.instance_name, exc)
        return Health("down", f"health check failed: {exc!r}", (time.monotonic() - started) * 1000)
    if not isinstance(health, Health):
        detail = f"health() returned {type(health).__name__}, not a Health"
        return Health("down", detail, (time.monotonic() - started) * 1000)
    if health.state not in HEALTH_STATES:
        detail = f"health() returned the state {health.state!r}, not up, degraded or down"
        return Health("down", detail, (time.monotonic() - started) * 1000)
    return health


async def check_all(
    bindings: Iterable[Binding], timeout_s: float = HEALTH_TIMEOUT_S
) -> dict[str, Health]:
    """Health of every instance, checked concurrently, as the running request's caller may see
    it (see `check_for_caller`)."""
    items = list(bindings)
    results = await asyncio.gather(*(check_for_caller(b, timeout_s) for b in items))
    return {b.instance_name: h for b, h in zip(items, results, strict=True)}


async def check_for_caller(binding: Binding, timeout_s: float = HEALTH_TIMEOUT_S) -> Health:
    """`check` for a page or listing: a user key reads the detail without server file paths."""
    health = await check(binding, timeout_s)
    detail = text_for_current_caller(health.detail)
    return health if detail == health.detail else dataclasses.replace(health, detail=detail)
