"""Circuit breakers per binding instance: stop calling a backend that keeps failing.

closed: calls go through; `failure_threshold` failures within `window_s` open it.
open: calls fail at once (503 + Retry-After) for `cooldown_s`, or until the health monitor
sees the instance up again.
half-open: after the cooldown one trial call goes through; success closes, failure reopens.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .errors import BackendUnavailable

State = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class CircuitBreaker:
    """One instance's breaker."""

    instance: str
    failure_threshold: int = 5
    window_s: float = 30.0
    cooldown_s: float = 30.0
    state: State = "closed"
    opened_at: float = 0.0
    trial_running: bool = False
    failures: deque[float] = field(default_factory=deque)
    last_error: str = ""
    down: bool = False  # the health monitor's latest check failed: a route tries it last

    def current_state(self) -> State:
        """The state, moving open → half-open once the cooldown is over."""
        if self.state == "open" and time.monotonic() - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
            self.trial_running = False
        return self.state

    def allows(self) -> bool:
        """True when a call may go through now (in half-open: only one trial at a time)."""
        state = self.current_state()
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def check(self) -> None:
        """Raise BackendUnavailable (with Retry-After) when no call may go through."""
        if not self.allows():
            remaining = max(1.0, self.cooldown_s - (time.monotonic() - self.opened_at))
            raise BackendUnavailable(
                f"binding instance {self.instance!r} is failing (circuit open: "
                f"{self.last_error or 'repeated failures'}); retry later",
                binding=self.instance,
                retry_after=remaining,
            )

    def probe(self) -> None:
        """The instance looks healthy again: let one trial call decide (half-open)."""
        if self.state == "open":
            self.state = "half_open"
            self.trial_running = False

    def end_trial(self) -> None:
        """A call ended without saying whether the backend works (cancelled, refused before
        it reached it): the next call may be the trial."""
        self.trial_running = False

    def success(self) -> None:
        """A call worked: close the circuit."""
        self.state = "closed"
        self.trial_running = False
        self.failures.clear()

    def failure(self, message: str) -> None:
        """A call failed on the backend's side."""
        now = time.monotonic()
        self.last_error = message[:200]
        if self.state == "half_open":
            self._open(now)
            return
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.window_s:
            self.failures.popleft()
        if len(self.failures) >= self.failure_threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self.opened_at = now
        self.trial_running = False
        self.failures.clear()


class Breakers:
    """The breakers of every instance, made on first use with the configured thresholds."""

    def __init__(
        self, failure_threshold: int = 5, window_s: float = 30.0, cooldown_s: float = 30.0
    ):
        self.settings = (failure_threshold, window_s, cooldown_s)
        self.by_instance: dict[str, CircuitBreaker] = {}

    def of(self, instance: str) -> CircuitBreaker:
        """The breaker of `instance`."""
        breaker = self.by_instance.get(instance)
        if breaker is None:
            threshold, window, cooldown = self.settings
            breaker = CircuitBreaker(instance, threshold, window, cooldown)
            self.by_instance[instance] = breaker
        return breaker
