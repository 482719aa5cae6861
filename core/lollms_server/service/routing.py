"""Fallbacks and load balancing across the targets of a route, guarded by circuit breakers."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from ..circuit import Breakers, CircuitBreaker
from ..errors import (
    BackendRefused,
    LollmsError,
    ModelLoadFailed,
    ModelNotFound,
    NotSupported,
    Overloaded,
    RateLimited,
)
from ..registry import Target
from ..resilience import FALLBACK_REMAINS
from ..resources.scheduler import Scheduler

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger(__name__)


def ordered_candidates(target: Target, scheduler: Scheduler) -> list[Target]:
    """The target then its fallbacks; for `least-busy` routes, the least loaded first; for
    `most-room` routes, those with the model already loaded, then those it fits (the most
    memory left first), then those reporting no room, then those it does not fit."""
    first = dataclasses.replace(target, fallbacks=()) if target.fallbacks else target
    candidates = [first, *target.fallbacks]
    if target.strategy == "least-busy":
        candidates.sort(key=lambda t: _load(t, scheduler))
    elif target.strategy == "most-room":
        candidates.sort(key=lambda t: (*_room_rank(t), _load(t, scheduler)))
    return candidates


def attempts(
    target: Target, scheduler: Scheduler, breakers: Breakers, metrics: Metrics | None
) -> Iterator[tuple[Attempt, Target]]:
    """One Attempt per candidate target whose circuit lets it try (those the health monitor
    saw down last: a frozen node held each call read_timeout_s). When every circuit is open,
    the last one's 503 is raised."""
    route = target.route
    candidates = ordered_candidates(target, scheduler)
    if len(candidates) > 1:
        candidates.sort(key=lambda t: breakers.of(t.binding.instance_name).down)
    for index, candidate in enumerate(candidates):
        last = index == len(candidates) - 1
        breaker = breakers.of(candidate.binding.instance_name)
        if not breaker.allows():
            if last:
                breaker.check()
            continue
        fallback_of = route if index > 0 and route else None
        yield (
            Attempt(breaker, candidate, last=last, fallback_of=fallback_of, metrics=metrics),
            (candidate),
        )


def _load(target: Target, scheduler: Scheduler) -> float:
    """This server's own share of the target's lane, plus what a remote backend last reported
    running or queued (its answers' figures are fresh; our in-flight calls are fresher)."""
    lane = scheduler.lanes.get((target.binding.instance_name, target.model))
    reported = target.binding.reported_load(target.model)
    if reported is not None:
        return reported + (0 if lane is None else lane.active + len(lane.waiting))
    return 0.0 if lane is None else (lane.active + len(lane.waiting)) / lane.capacity


def _room_rank(target: Target) -> tuple[int, float]:
    """(tier, -room left): loaded, fits, unknown, does not fit; then the most room first."""
    room = target.binding.reported_room(target.model)
    if room is None:
        return 2, 0.0
    if room.loaded:
        return 0, -room.left
    return (1 if room.left >= 0 else 3), -room.left


def is_backend_failure(exc: BaseException) -> bool:
    """A failure of the backend itself (5xx), as opposed to a bad request or a missing feature."""
    return (
        isinstance(exc, LollmsError)
        and exc.status >= 500
        and not isinstance(exc, (NotSupported, Overloaded, BackendRefused, ModelLoadFailed))
    )


def is_backend_rate_limit(exc: BaseException) -> bool:
    """The backend's own 429 (a provider's quota, not the caller's key): the backend is fine
    and opens no circuit, but the next target may serve the request."""
    return isinstance(exc, RateLimited) and exc.binding is not None


class Attempt:
    """One try of one target: feeds its breaker and decides whether the next target may try.

    Leaving the block with a backend failure (or a full queue, the backend's own 429, its 403
    to our key, or an operation the backend lacks: 501) before anything was sent to the
    client suppresses the error when another target remains, so the caller's loop goes on.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        target: Target,
        *,
        last: bool,
        fallback_of: str | None,
        metrics: Metrics | None,
    ) -> None:
        self.breaker = breaker
        self.target = target
        self.last = last
        self.fallback_of = fallback_of
        self.metrics = metrics
        self.committed = False
        self._outer_fallback = False

    async def __aenter__(self) -> Attempt:
        # the backend's Retry-After is not waited for while a next target could serve
        self._outer_fallback = FALLBACK_REMAINS.get()
        FALLBACK_REMAINS.set(not self.last)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        FALLBACK_REMAINS.set(self._outer_fallback)  # no token: an async generator's exit
        if exc is None:
            self.breaker.success()
            if self.fallback_of is not None and self.metrics is not None:
                metrics = self.metrics
                metrics.child(metrics.fallbacks, self.fallback_of, self.target.ref).inc()
            return False
        if is_backend_failure(exc):
            self.breaker.failure(getattr(exc, "message", str(exc)))
        elif isinstance(exc, LollmsError) and not isinstance(exc, (Overloaded, ModelLoadFailed)):
            self.breaker.success()  # the backend answered; the request was at fault
        else:
            self.breaker.end_trial()
        can_hand_over = (
            is_backend_failure(exc)
            or isinstance(exc, Overloaded | NotSupported | ModelLoadFailed | BackendRefused)
            or is_backend_rate_limit(exc)
        )
        if can_hand_over and not self.last and not self.committed:
            log.warning("%s failed (%s); trying the next target", self.target.ref, exc)
            return True
        explained = self.target.unknown_model(exc) if isinstance(exc, ModelNotFound) else exc
        if explained is not exc:
            raise explained from None  # where the model's name came from
        return False
