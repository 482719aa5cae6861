"""Background health monitor: re-checks every instance, backs off while one is down, and
half-opens an open circuit as soon as its instance answers again (the next call is a trial)."""

from __future__ import annotations

import asyncio
import logging
import time

from ..bindings import Health
from ..circuit import Breakers
from ..health import check
from ..registry import Registry

log = logging.getLogger(__name__)
MAX_BACKOFF = 8


class HealthMonitor:
    """Latest health per instance, refreshed every `interval_s` (x2 per failure, up to x8)."""

    def __init__(self, registry: Registry, breakers: Breakers, interval_s: float) -> None:
        self.registry = registry
        self.breakers = breakers
        self.interval_s = interval_s
        self.latest: dict[str, Health] = {}
        self.checked_at: dict[str, float] = {}
        self._backoff: dict[str, int] = {}
        self._next: dict[str, float] = {}

    async def check_due(self) -> None:
        """Check every instance whose next check is due."""
        now = time.monotonic()
        due = [b for b in self.registry if self._next.get(b.instance_name, 0.0) <= now]
        results = await asyncio.gather(*(check(b) for b in due))
        for binding, health in zip(due, results, strict=True):
            name = binding.instance_name
            previous = self.latest.get(name)
            self.latest[name] = health
            self.checked_at[name] = time.monotonic()
            if health.state == "down":
                self._backoff[name] = min(self._backoff.get(name, 1) * 2, MAX_BACKOFF)
            else:
                self._backoff[name] = 1
                breaker = self.breakers.of(name)
                if breaker.current_state() == "open":
                    log.info("instance %s answers again: its next call is a trial", name)
                    breaker.probe()
            if previous is not None and previous.state != health.state:
                log.warning("instance %s is now %s %s", name, health.state, health.detail)
            self._next[name] = time.monotonic() + self.interval_s * self._backoff[name]

    async def run(self) -> None:
        """Check forever (until cancelled)."""
        while True:
            try:
                await self.check_due()
            except Exception:  # the monitor must outlive any one bad check
                log.exception("health monitor round failed")
            await asyncio.sleep(min(self.interval_s, 1.0) if self.interval_s < 1 else 1.0)
