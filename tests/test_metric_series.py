"""The lock-free series export exactly what prometheus_client's own would, update for update."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lollms_server.metric_series import LoopCounter, LoopGauge, LoopHistogram
from lollms_server.metrics import LATENCY_BUCKETS


def _exposition(counter: type, gauge: type, histogram: type) -> str:
    registry = CollectorRegistry(auto_describe=True)
    requests = counter("t_requests", "Requests", ["route", "status"], registry=registry)
    plain = counter("t_plain", "No labels", registry=registry)
    in_flight = gauge("t_in_flight", "Now", registry=registry)
    latency = histogram("t_latency", "Latency", ["route"], buckets=LATENCY_BUCKETS,
                        registry=registry)  # fmt: skip
    overhead = histogram("t_overhead", "Overhead", buckets=(1, 5, 10), registry=registry)
    for index, amount in enumerate((0.0005, 0.001, 0.003, 0.07, 2.5, 61.0, 0.0, math.inf)):
        requests.labels("/a", str(200 + index % 2)).inc()
        requests.labels("/b", "500").inc(2.5)
        plain.inc(index)
        in_flight.inc()
        latency.labels("/a" if index % 3 else "/b").observe(amount)
        overhead.observe(amount * 100)
        if index % 2:
            in_flight.dec(2)
    latency.labels("/c").observe(math.nan)
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{?[^ ]*) [0-9.e+]+", r"\1 T", text)


def test_the_exposition_is_prometheus_clients_own() -> None:
    """Names, HELP and TYPE, labels, cumulative buckets, sums, counts and `_created` match."""
    ours = _exposition(LoopCounter, LoopGauge, LoopHistogram)
    assert ours == _exposition(Counter, Gauge, Histogram)
    assert 't_latency_bucket{le="0.001",route="/b"} 2.0' in ours
    assert "t_requests_created" in ours


def test_refusals_are_prometheus_clients_own() -> None:
    """A negative increment or an update of a labelled parent is refused as before."""
    registry = CollectorRegistry()
    counter = LoopCounter("t_c", "C", ["a"], registry=registry)
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError, match="label"):
        counter.inc()
    with pytest.raises(ValueError, match="label"):
        LoopHistogram("t_h", "H", ["a"], registry=registry).observe(1)
    with pytest.raises(ValueError, match="label"):
        LoopGauge("t_g", "G", ["a"], registry=registry).inc()
