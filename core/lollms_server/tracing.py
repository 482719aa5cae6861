"""Distributed tracing, the facade the server uses: spans and outgoing trace headers.

With `[tracing] enabled = false` (the default) nothing of OpenTelemetry is imported and every
helper here is a no-op: `span()` hands back one shared null context. When tracing is on,
`tracing_otel.OtelTracing` (the optional `[tracing]` extra) does the work; the observe
middleware puts it on the request's `Trace`, so the helpers reach it without a global.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .trace import HOPS_HEADER, current_trace
from .tracing_types import AttributeValue, SpanLike, Tracer, TraceSettings

if TYPE_CHECKING:
    from .config_sections import TracingConfig

EXTRA = "tracing"
REQUEST_ID_HEADER = "X-Request-Id"
NO_SPAN: AbstractContextManager[None] = nullcontext()


def start_tracing(config: TracingConfig, environ: Mapping[str, str]) -> Tracer | None:
    """The tracer `[tracing]` asks for, or None when off; a clear error when the extra lacks."""
    if not config.enabled:
        return None
    try:
        from .tracing_otel import OtelTracing
    except ImportError as exc:
        raise ConfigError(
            f"[tracing] enabled = true needs OpenTelemetry ({exc.name} is not installed): "
            f"pip install 'lollms-server[{EXTRA}]'"
        ) from exc
    settings = TraceSettings(
        endpoint=config.endpoint,
        headers=parse_headers(environ.get(config.headers_env, "")) if config.headers_env else {},
        sample_ratio=config.sample_ratio,
        service_name=config.service_name,
        timeout_s=config.export_timeout_s,
    )
    return OtelTracing(settings)


def parse_headers(text: str) -> dict[str, str]:
    """`name=value,name2=value2` (OTEL_EXPORTER_OTLP_HEADERS' format, values %-encoded)."""
    from urllib.parse import unquote

    headers: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            headers[unquote(name.strip())] = unquote(value.strip())
    return headers


def tracer() -> Tracer | None:
    """The running request's tracer, None when tracing is off or outside a request."""
    trace = current_trace()
    return trace.tracer if trace is not None else None


def span(
    name: str,
    attributes: Mapping[str, AttributeValue | None] | None = None,
    *,
    client: bool = False,
) -> AbstractContextManager[SpanLike | None]:
    """A child span of the current one for the block (the shared null context when off);
    attributes whose value is None are left out."""
    active = tracer()
    if active is None:
        return NO_SPAN
    given = {k: v for k, v in (attributes or {}).items() if v is not None}
    return active.span(name, given, client=client)


def outgoing_headers() -> dict[str, str]:
    """Headers for a call to a backend: the request id and the W3C trace context (this
    server's span when tracing is on, else the client's `traceparent` passed on unchanged).
    A call made outside any request (start-up, health checks) is one hop from this server."""
    trace = current_trace()
    if trace is None:
        return {HOPS_HEADER: "1"}
    headers = {REQUEST_ID_HEADER: trace.request_id, HOPS_HEADER: str(trace.hops + 1)}
    if trace.tracer is not None:
        trace.tracer.inject(headers)
    elif trace.traceparent:
        headers["traceparent"] = trace.traceparent
    return headers


def first_token(span_: SpanLike | None, seconds: float) -> None:
    """Record the time to the first token on a binding call's span."""
    if span_ is not None:
        span_.set_attribute("lollms.time_to_first_token_ms", round(seconds * 1000, 3))
        span_.add_event("first_token")


def annotate(span_: SpanLike | None, **attributes: Any) -> None:
    """Set `lollms.<name>` attributes on a span (None values skipped; no-op without a span)."""
    if span_ is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span_.set_attribute(f"lollms.{key}", value)
