"""The shapes tracing is made of (a span, a tracer, the exporter's settings): shared by the
facade (`tracing.py`), the OpenTelemetry back end (`tracing_otel.py`) and the request's `Trace`."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

AttributeValue = str | int | float | bool


class SpanLike(Protocol):
    """What the server does with a span: attributes and events."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        """Note an instant in the span (e.g. the first token)."""


class Tracer(Protocol):
    """A tracing back end (OpenTelemetry's, when the extra is installed)."""

    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[SpanLike]:
        """The request's span, continuing the caller's W3C trace context if it sent one."""

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue], *, client: bool = False
    ) -> AbstractContextManager[SpanLike]:
        """A child span of the current one (kind CLIENT for a call to another server)."""

    def inject(self, headers: dict[str, str]) -> None:
        """Put the current span's `traceparent` (and `tracestate`) into `headers`."""

    def ids(self) -> tuple[str, str] | None:
        """The current span's (trace id, span id) in hex, or None when not sampled."""

    def shutdown(self) -> None:
        """Export what is left and stop."""


@dataclass(frozen=True)
class TraceSettings:
    """`[tracing]` resolved for the exporter: the headers read from the environment."""

    endpoint: str
    headers: dict[str, str]
    sample_ratio: float
    service_name: str
    timeout_s: float
