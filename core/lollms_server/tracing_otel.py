"""OpenTelemetry behind `tracing.Tracer`: OTLP/HTTP export, W3C trace context, ratio sampling.

Imported only when `[tracing] enabled = true` (the `[tracing]` extra). The provider is this
server's own (not the process-global one), so two apps in one process do not mix their spans.
The aiohttp instrumentations are not used: the request span is opened by the observe
middleware (it knows the route pattern, key id and request id) and the client span by the
shared upstream client (which ends it with the streamed body and sends the request id too):
one place each, no patching of aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .tracing_types import AttributeValue, SpanLike, TraceSettings

PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing:
    """Spans of one server, exported in batches to an OTLP/HTTP collector."""

    def __init__(self, settings: TraceSettings) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        exporter = OTLPSpanExporter(
            endpoint=settings.endpoint, headers=settings.headers, timeout=settings.timeout_s
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("lollms_server")

    @contextmanager
    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, AttributeValue]
    ) -> Iterator[SpanLike]:
        """The request's span, a child of the caller's `traceparent` when it sent a valid one."""
        parent = PROPAGATOR.extract(headers)
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span
            status = (getattr(span, "attributes", None) or {}).get("http.response.status_code")
            if isinstance(status, int) and status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))

    @contextmanager
    def span(
        self, name: str, attributes: Mapping[str, AttributeValue], *, client: bool = False
    ) -> Iterator[SpanLike]:
        """A child of the current span."""
        kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
        with self.tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span

    def inject(self, headers: dict[str, str]) -> None:
        """`traceparent`/`tracestate` of the current span into `headers`."""
        PROPAGATOR.inject(headers)

    def ids(self) -> tuple[str, str] | None:
        """The current span's trace and span ids (hex) when it is recorded."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def shutdown(self) -> None:
        """Flush the spans still batched and stop the exporter."""
        self.provider.shutdown()
