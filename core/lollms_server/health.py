"""Health checks of binding instances, bounded in time and never raising."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from .bindings import Binding, Health

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 5.0


async def check(binding: Binding, timeout_s: float = HEALTH_TIMEOUT_S) -> Health:
    """The instance's health, `down` if the check times out or breaks its no-raise promise."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            health = await binding.health()
    except TimeoutError:
        return Health("down", f"health check timed out after {timeout_s}s", timeout_s * 1000)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a binding broke its no-raise promise
        log.warning("health() of %s raised %r", binding.instance_name, exc)
        return Health("down", f"health check failed: {exc!r}", (time.monotonic() - started) * 1000)
    if not isinstance(health, Health):
        detail = f"health() returned {type(health).__name__}, not a Health"
        return Health("down", detail, (time.monotonic() - started) * 1000)
    return health


async def check_all(
    bindings: Iterable[Binding], timeout_s: float = HEALTH_TIMEOUT_S
) -> dict[str, Health]:
    """Health of every instance, checked concurrently."""
    items = list(bindings)
    results = await asyncio.gather(*(check(b, timeout_s) for b in items))
    return {b.instance_name: h for b, h in zip(items, results, strict=True)}
