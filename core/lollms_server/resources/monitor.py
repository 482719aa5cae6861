"""Background health monitor: re-checks every instance, backs off while one is down, half-opens
an open circuit as soon as its instance answers again (the next call is a trial), and restarts
crashed managed processes.

A binding whose managed process died says so with `Health(..., restartable=True)`; the monitor
then calls its `restart()`: at once for the first crash, then after an interval that doubles
with each further restart (up to x8) until a check finds the instance up again, and never more
than `restart_limit` times within `restart_window_s`. After a restart that succeeds,
`after_restart` (the lifecycle's `forget_unlisted`) drops from the memory books the models the
binding no longer lists (a dead model whose file is gone cannot come back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..bindings import Binding, Health
from ..circuit import Breakers
from ..health import check, startup_failed
from ..registry import Registry

log = logging.getLogger(__name__)
MAX_BACKOFF = 8
RestartRecorder = Callable[[str, str], None]  # (instance, outcome: ok | failed | refused)
AfterRestart = Callable[[Binding], Awaitable[None]]  # the books follow what came back


class HealthMonitor:
    """Latest health per instance, refreshed every `interval_s` (x2 per failure, up to x8)."""

    def __init__(
        self,
        registry: Registry,
        breakers: Breakers,
        interval_s: float,
        *,
        restart_limit: int = 5,
        restart_window_s: float = 600.0,
        restart_timeout_s: float = 300.0,
        on_restart: RestartRecorder | None = None,
        after_restart: AfterRestart | None = None,
    ) -> None:
        self.registry = registry
        self.breakers = breakers
        self.interval_s = interval_s
        self.restart_limit = restart_limit
        self.restart_window_s = restart_window_s
        self.restart_timeout_s = restart_timeout_s
        self.on_restart = on_restart
        self.after_restart = after_restart
        self.latest: dict[str, Health] = {}
        self.checked_at: dict[str, float] = {}
        self.failed_in_a_row: dict[str, int] = {}  # consecutive `down` checks per instance
        self.restarts: dict[str, deque[float]] = {}
        self._backoff: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._restarting: dict[str, asyncio.Task[None]] = {}
        self._restart_backoff: dict[str, int] = {}
        self._restart_at: dict[str, float] = {}
        self._refused: set[str] = set()
        self._rechecking: asyncio.Task[None] | None = None

    async def check_due(self) -> None:
        """Check every instance whose next check is due."""
        now = time.monotonic()
        await self._check([b for b in self.registry if self._next.get(b.instance_name, 0.0) <= now])

    def recheck_down_soon(self, min_age_s: float) -> None:
        """Start checking, in the background, each down instance last checked over `min_age_s`
        ago, whatever its backoff: a readiness probe sees a backend that came back within about
        that time, and never waits on one that does not answer."""
        if self._rechecking is not None and not self._rechecking.done():
            return
        now = time.monotonic()
        due = [
            binding
            for binding in self.registry
            if (health := self.latest.get(binding.instance_name)) is not None
            and health.state == "down"
            and now - self.checked_at.get(binding.instance_name, 0.0) >= min_age_s
        ]
        if due:
            self._rechecking = asyncio.create_task(self._check(due))

    async def _check(self, due: list[Binding]) -> None:
        results = await asyncio.gather(*(check(b) for b in due))
        for binding, health in zip(due, results, strict=True):
            self._record(binding.instance_name, health)

    def _record(self, name: str, health: Health) -> None:
        previous = self.latest.get(name)
        self.latest[name] = health
        self.checked_at[name] = time.monotonic()
        failed = health.state == "down" and not health.draining  # a planned stop is no failure
        self.failed_in_a_row[name] = self.failed_in_a_row.get(name, 0) + 1 if failed else 0
        self.breakers.of(name).down = health.state == "down"
        if health.state == "down":
            self._backoff[name] = min(self._backoff.get(name, 1) * 2, MAX_BACKOFF)
        else:
            self._backoff[name] = 1
            breaker = self.breakers.of(name)
            if breaker.current_state() == "open":
                log.info("instance %s answers again: its next call is a trial", name)
                breaker.probe()
        if health.state == "up":
            self._restart_backoff[name] = 1
        if previous is not None and previous.state != health.state:
            state = (
                f"{health.state} (its server drains: a planned stop)"
                if health.draining
                else health.state
            )
            log.warning("instance %s is now %s %s", name, state, health.detail)
        self._next[name] = time.monotonic() + self.interval_s * self._backoff[name]

    def restart_crashed(self) -> None:
        """Start restarting every instance whose latest health says a managed process died."""
        now = time.monotonic()
        for binding in self.registry:
            name = binding.instance_name
            health = self.latest.get(name)
            if (
                health is None
                or not health.restartable
                or name in self._restarting
                or self._restart_at.get(name, 0.0) > now
            ):
                continue
            recent = self.restarts.setdefault(name, deque())
            while recent and recent[0] <= now - self.restart_window_s:
                recent.popleft()
            if len(recent) >= self.restart_limit:
                if name not in self._refused:
                    self._refused.add(name)
                    self._count(name, "refused")
                    log.error(
                        "instance %s: not restarted: %d restarts within %gs ([resilience] "
                        "restart_limit); it stays %s until the window passes",
                        name, len(recent), self.restart_window_s, health.state,
                    )  # fmt: skip
                continue
            self._refused.discard(name)
            recent.append(now)
            self._restarting[name] = asyncio.create_task(self._restart(binding, health))

    async def _restart(self, binding: Binding, health: Health) -> None:
        name = binding.instance_name
        try:
            await self._try_restart(binding, health)
        finally:
            self._restarting.pop(name, None)

    async def _try_restart(self, binding: Binding, health: Health) -> None:
        name = binding.instance_name
        backoff = self._restart_backoff.get(name, 1)
        log.warning(
            "instance %s: restarting (%s); restart %d of at most %d within %gs",
            name, health.detail or health.state, len(self.restarts[name]),
            self.restart_limit, self.restart_window_s,
        )  # fmt: skip
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.restart_timeout_s):
                await binding.restart()
        except Exception as exc:  # noqa: BLE001 - any failure: count it, retry after a backoff
            outcome = "failed"
            log.error("instance %s: restart failed: %r", name, exc)
        else:
            outcome = "ok"
            startup_failed(binding, None)  # restarted: an earlier failed startup is behind it
            if self.after_restart is not None:
                await self.after_restart(binding)
        self._count(name, outcome)
        self._restart_backoff[name] = min(backoff * 2, MAX_BACKOFF)
        self._restart_at[name] = time.monotonic() + self.interval_s * backoff
        self._record(name, await check(binding))
        log.info(
            "instance %s: restart %s in %.2fs; it is now %s %s",
            name, outcome, time.monotonic() - started, self.latest[name].state,
            self.latest[name].detail,
        )  # fmt: skip

    def _count(self, name: str, outcome: str) -> None:
        if self.on_restart is not None:
            self.on_restart(name, outcome)

    async def run(self) -> None:
        """Check (and restart what crashed) forever, until cancelled."""
        try:
            while True:
                try:
                    await self.check_due()
                    if self.restart_limit:
                        self.restart_crashed()
                except Exception:  # the monitor must outlive any one bad check
                    log.exception("health monitor round failed")
                await asyncio.sleep(min(self.interval_s, 1.0) if self.interval_s < 1 else 1.0)
        finally:
            tasks = list(self._restarting.values())
            if self._rechecking is not None:
                tasks.append(self._rechecking)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
