"""Graceful drain on SIGTERM: readiness turns 503 and new generations are refused at once while
the listener stays open, the requests in flight finish (up to `[server] drain_timeout_s`), then
the generations still running are stopped (each ends with a `Draining` error: an error event in
a stream already started, else a 503), the server shuts down as usual and the process exits 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from .errors import Draining
from .keys import DRAIN, METRICS

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5.0  # about what a restarted replica needs to come back
POLL_S = 0.05
STOP_GRACE_S = 1.0  # for the stopped generations to send their error before the shutdown


class Drain:
    """The drain state of one server process."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started_at: float | None = None
        self.stopping = False  # the drain is over: the generations still running are stopped
        self.running: set[asyncio.Task[Any]] = set()  # the tasks running a generation now

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

    def stop_running(self) -> None:
        """End the drain: cancel every generation still running (`stopped` is what each then
        reports)."""
        if not self.stopping:
            self.stopping = True
            for task in self.running:
                task.cancel()

    def stopped(self) -> Draining:
        """The error of a generation stopped at the end of the drain."""
        return Draining(
            "the server is shutting down: the drain ended before this generation did; retry "
            "(another replica, or this one once restarted)",
            retry_after=RETRY_AFTER_S,
        )

    async def wait_idle(self, in_flight: Callable[[], float]) -> bool:
        """Start draining; return True once no request is in flight, False at the time limit
        (or once the drain was ended)."""
        self.started_at = self.started_at or time.monotonic()
        return await until_idle(in_flight, self.started_at + self.timeout_s, lambda: self.stopping)


def _requests_in_flight(app: web.Application) -> float:
    gauge = app[METRICS].in_flight
    return sum(sample.value for family in gauge.collect() for sample in family.samples)


async def until_idle(
    in_flight: Callable[[], float], deadline: float, give_up: Callable[[], bool] | None = None
) -> bool:
    """True once no request is in flight; False at `deadline` (monotonic) or on `give_up()`."""
    while in_flight() > 0:
        if (give_up is not None and give_up()) or time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


def _exit_now() -> None:
    raise web.GracefulExit()  # what aiohttp's own handler raises: run_app shuts down cleanly


async def drain_on_sigterm(app: web.Application) -> None:
    """On-startup hook of the served app (not of in-process test apps): SIGTERM drains, a
    second SIGTERM ends the drain at once (a third exits without waiting for the stopped
    generations' errors); SIGINT keeps aiohttp's immediate shutdown."""
    loop = asyncio.get_running_loop()
    drain = app[DRAIN]
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then_exit() -> None:
        log.info("SIGTERM: draining (up to %.0f s); ready answers 503", drain.timeout_s)
        in_flight = partial(_requests_in_flight, app)
        if not await drain.wait_idle(in_flight):
            log.warning("drain ended; stopping the %d generations running", len(drain.running))
            drain.stop_running()
            await until_idle(in_flight, time.monotonic() + STOP_GRACE_S)
        loop.call_soon(_exit_now)

    def on_sigterm() -> None:
        if drain.stopping:
            loop.call_soon(_exit_now)
            return
        if drain.draining:
            drain.stop_running()  # drain_then_exit sees it, waits for their errors, exits
            return
        drain.started_at = time.monotonic()  # ready and admissions see it before any await
        task = loop.create_task(drain_then_exit())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
