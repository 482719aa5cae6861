"""Counters, gauges and histograms updated on the event loop without a lock per update.

prometheus_client guards each value with a lock and checks its state on every update; the
series a request updates (a dozen per chat) change only on the event loop's thread, so these
subclasses add to plain floats and find a histogram's bucket by bisection. Their exposition
is prometheus_client's own (the same `collect`, samples and `_created` timestamps).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


class PlainValue:
    """A float without a lock, with prometheus_client's value interface."""

    __slots__ = ("_exemplar", "_value")

    def __init__(self) -> None:
        self._value = 0.0
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        """Add `amount`."""
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        """Replace the value."""
        self._value = value

    def get(self) -> float:
        """The value."""
        return self._value

    def set_exemplar(self, exemplar: Any) -> None:
        """Keep an exemplar."""
        self._exemplar = exemplar

    def get_exemplar(self) -> Any:
        """The exemplar kept, if any."""
        return self._exemplar


class LoopCounter(Counter):
    """A counter only the event loop's thread updates."""

    def _metric_init(self) -> None:
        self._value = PlainValue()
        self._created = time.time()

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        """Increment by `amount` (prometheus_client's checks when it would refuse)."""
        value: PlainValue | None = self.__dict__.get("_value")
        if value is None or amount < 0 or exemplar:
            return super().inc(amount, exemplar)
        value._value += amount


class LoopGauge(Gauge):
    """A gauge only the event loop's thread updates (`inc` and `dec` without a lock)."""

    def _metric_init(self) -> None:
        if self._multiprocess_mode in self._MOST_RECENT_MODES:  # inc and dec refused there
            return super()._metric_init()
        self._value = PlainValue()

    def inc(self, amount: float = 1) -> None:
        """Increment by `amount`."""
        value = self.__dict__.get("_value")
        if type(value) is not PlainValue:
            return super().inc(amount)
        value._value += amount

    def dec(self, amount: float = 1) -> None:
        """Decrement by `amount`."""
        value = self.__dict__.get("_value")
        if type(value) is not PlainValue:
            return super().dec(amount)
        value._value -= amount


class LoopHistogram(Histogram):
    """A histogram only the event loop's thread updates; the bucket is found by bisection."""

    def _metric_init(self) -> None:
        self._created = time.time()
        self._sum = PlainValue()
        self._buckets = [PlainValue() for _ in self._upper_bounds]
        self._bounds = tuple(self._upper_bounds)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Count `amount` in the first bucket whose bound it does not exceed, and in the sum."""
        bounds: tuple[float, ...] | None = self.__dict__.get("_bounds")
        if bounds is None or exemplar:
            return super().observe(amount, exemplar)
        self._sum._value += amount
        index = bisect_left(bounds, amount)
        if index < len(bounds) and amount <= bounds[index]:  # NaN lands in no bucket
            self._buckets[index]._value += 1
