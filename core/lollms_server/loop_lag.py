"""Event-loop lag: how late a timer of the server's event loop fires. A binding, function or
script that blocks the loop (sync I/O, CPU work not sent to a thread) delays every request
of the process; the lag shows it on `/metrics` and in a warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import keys

log = logging.getLogger(__name__)
INTERVAL_S = 0.5  # one timer, and one sample of `lollms_event_loop_lag_seconds`, this often
WARN_LAG_S = 0.5  # a lag this long is logged as a warning...
WARN_EVERY_S = 10.0  # ...at most once this often (the others are counted in the next one)


class LagWatch:
    """Samples the lag every `interval_s`; warns past `warn_s`, at most once per `every_s`."""

    def __init__(
        self,
        observe: Callable[[float], None],
        interval_s: float = INTERVAL_S,
        warn_s: float = WARN_LAG_S,
        every_s: float = WARN_EVERY_S,
    ) -> None:
        self.observe = observe
        self.interval_s, self.warn_s, self.every_s = interval_s, warn_s, every_s
        self.warned_at = -every_s
        self.unreported = 0  # lags past warn_s since the last warning, not warned of

    async def run(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.record(max(0.0, loop.time() - due), loop.time())

    def record(self, lag: float, now: float) -> None:
        """One sample: observed, and warned of when it is long and no warning went out lately."""
        self.observe(lag)
        if lag < self.warn_s:
            return
        if now - self.warned_at < self.every_s:
            self.unreported += 1
            return
        more = f"; {self.unreported} more over {self.warn_s:g} s since the last warning"
        log.warning(
            "the event loop was blocked for %.2f s: every request of this process waited "
            "(a binding, function or script doing blocking work on the loop%s; see "
            "lollms_event_loop_lag_seconds)",
            lag, more if self.unreported else "",
        )  # fmt: skip
        self.warned_at, self.unreported = now, 0


async def lag_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the lag watch runs while the app serves."""
    watch = LagWatch(app[keys.METRICS].loop_lag.observe)
    task = asyncio.create_task(watch.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
