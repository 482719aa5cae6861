"""Prometheus metrics (prometheus-client), one registry per application."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from .metric_labels import KnownModels
from .metric_series import LoopCounter, LoopGauge, LoopHistogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GaugeReader = Callable[[], Iterable[tuple[dict[str, str], float]]]
M = TypeVar("M", bound=MetricWrapperBase)


class Metrics:
    """Every series the server exports; gauges of live state are read at scrape time."""

    def __init__(self) -> None:
        # The series a request updates change on the event loop only: the Loop* classes
        self.registry = CollectorRegistry(auto_describe=True)
        self.models = KnownModels()  # the model names that may be label values
        self.requests = LoopCounter(
            "lollms_requests", "HTTP requests by route and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.in_flight = LoopGauge(
            "lollms_requests_in_flight", "HTTP requests being served now", registry=self.registry
        )
        self.latency = LoopHistogram(
            "lollms_request_duration_seconds", "HTTP request latency",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.overhead = LoopHistogram(
            "lollms_overhead_seconds", "Time spent in lollms-server itself per request",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.generations = LoopCounter(
            "lollms_generations", "Generations by instance, type and status",
            ["instance", "generation_type", "status"], registry=self.registry,
        )  # fmt: skip
        self.first_token = LoopHistogram(
            "lollms_time_to_first_token_seconds", "Time to the first streamed chunk",
            ["instance"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.tokens = LoopCounter(
            "lollms_generated_tokens", "Completion tokens produced",
            ["instance", "model"], registry=self.registry,
        )  # fmt: skip
        self.tokens_per_second = LoopHistogram(
            "lollms_tokens_per_second", "Completion tokens per second of a generation",
            ["instance"], buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
            registry=self.registry,
        )  # fmt: skip
        self.loop_lag = LoopHistogram(
            "lollms_event_loop_lag_seconds",
            "How late a timer of the event loop fired (sampled every 0.5 s): while the loop is "
            "blocked, every request of the process waits",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_wait = LoopHistogram(
            "lollms_queue_wait_seconds", "Time a generation waited for a slot",
            ["instance"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.retries = LoopCounter(
            "lollms_retries", "Retried backend calls", ["instance"], registry=self.registry
        )
        self.fallbacks = LoopCounter(
            "lollms_fallbacks", "Requests served by a fallback instance",
            ["route", "instance"], registry=self.registry,
        )  # fmt: skip
        self.restarts = Counter(
            "lollms_restarts", "Restarts of crashed managed processes by the health monitor",
            ["instance", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.function_calls = Counter(
            "lollms_function_calls", "Functions run for models, by outcome (ok or error)",
            ["function", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.function_seconds = Histogram(
            "lollms_function_seconds", "Time a function call took", ["function"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.rate_limited = Counter(
            "lollms_rate_limit_rejections", "Requests refused by a rate limit",
            registry=self.registry,
        )  # fmt: skip
        self.rate_limit_storage_errors = Counter(
            "lollms_rate_limit_storage_errors", "Rate limit checks the storage (Redis) failed",
            registry=self.registry,
        )  # fmt: skip
        self.audit_write_failures = Counter(
            "lollms_audit_write_failures", "Audit events that could not be written",
            registry=self.registry,
        )  # fmt: skip
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, open fds, memory
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, looked up once per series (prometheus keeps each anyway)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def add_gauge(
        self, name: str, documentation: str, labels: list[str], read: GaugeReader
    ) -> None:
        """Export a gauge whose samples `read()` returns when Prometheus scrapes."""
        self.registry.register(_LiveGauge(name, documentation, labels, read, self.models))

    def render(self) -> bytes:
        """The text exposition format of every series."""
        return generate_latest(self.registry)


class _LiveGauge(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: GaugeReader,
        models: KnownModels,
    ):
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read
        self.models = models

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        samples: dict[tuple[str, ...], float] = {}
        for labels, value in self.read():
            if "model" in labels:  # unknown models add up under `other`
                labels = {**labels, "model": self.models.label(labels.get("instance", ""),
                                                               labels["model"])}  # fmt: skip
            key = tuple(labels.get(name, "") for name in self.labels)
            samples[key] = samples.get(key, 0.0) + value
        for key, value in samples.items():
            family.add_metric(list(key), value)
        return [family]
