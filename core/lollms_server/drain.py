"""Graceful drain on SIGTERM: readiness turns 503 and new generations are refused at once while
the listener stays open, the requests in flight finish (up to `[server] drain_timeout_s`), then
the server shuts down as usual and the process exits 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from .errors import Draining
from .keys import DRAIN, METRICS

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5.0  # about what a restarted replica needs to come back
POLL_S = 0.05


class Drain:
    """The drain state of one server process."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started_at: float | None = None

    @property
    def draining(self) -> bool:
        """Whether the server is draining (it takes no new generation)."""
        return self.started_at is not None

    def admit(self) -> None:
        """Raise `Draining` (503 + Retry-After) when a new generation arrives during a drain."""
        if self.draining:
            raise Draining(
                "the server is shutting down and takes no new generation; retry (another "
                "replica, or this one once restarted)",
                retry_after=RETRY_AFTER_S,
            )

    async def wait_idle(self, in_flight: Callable[[], float]) -> bool:
        """Start draining; return True once no request is in flight, False at the time limit."""
        self.started_at = self.started_at or time.monotonic()
        deadline = self.started_at + self.timeout_s
        while in_flight() > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True


def _requests_in_flight(app: web.Application) -> float:
    gauge = app[METRICS].in_flight
    return sum(sample.value for family in gauge.collect() for sample in family.samples)


def _exit_now() -> None:
    raise web.GracefulExit()  # what aiohttp's own handler raises: run_app shuts down cleanly


async def drain_on_sigterm(app: web.Application) -> None:
    """On-startup hook of the served app (not of in-process test apps): SIGTERM drains, a
    second SIGTERM ends the drain at once; SIGINT keeps aiohttp's immediate shutdown."""
    loop = asyncio.get_running_loop()
    drain = app[DRAIN]
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then_exit() -> None:
        log.info("SIGTERM: draining (up to %.0f s); ready answers 503", drain.timeout_s)
        idle = await drain.wait_idle(lambda: _requests_in_flight(app))
        if not idle:
            log.warning("drain: requests still in flight after %.0f s; stopping", drain.timeout_s)
        loop.call_soon(_exit_now)

    def on_sigterm() -> None:
        if drain.draining:
            loop.call_soon(_exit_now)
            return
        drain.started_at = time.monotonic()  # ready and admissions see it before any await
        task = loop.create_task(drain_then_exit())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
