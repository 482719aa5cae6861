"""Request ids, the overhead header, one structured log line and metrics per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import CLIENT_CLOSED
from ..keys import BREAKERS, DRAIN, METRICS, MONITOR, REQUEST_PRINCIPAL, TRACER
from ..logs import LINE_FIELDS
from ..metric_labels import method_label
from ..metrics import CONTENT_TYPE
from ..trace import HOPS_HEADER, Trace, current_trace, end_trace, start_trace
from ..tracing import annotate
from .endpoint import endpoint

routes = web.RouteTableDef()
READY_RECHECK_S = 5.0  # how often readiness probes re-check a down instance, backoff aside
request_log = logging.getLogger("lollms_server.requests")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The route's pattern (bounded label values), or `unmatched`."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: trace, then log and count the finished request."""
    headers = request.headers
    trace, token = start_trace(
        headers.get("X-Request-Id"), headers.get("traceparent"), headers.get(HOPS_HEADER)
    )
    app = request.app  # a property of three calls: read once
    trace.tracer = app[TRACER]
    metrics = app[METRICS]
    status = 500
    metrics.in_flight.inc()
    try:
        response = await (handler(request) if trace.tracer is None else _traced(request, handler))
        status = response.status
        if not response.prepared:  # streams got theirs in add_trace_headers
            _set_trace_headers(response, trace)
        return response
    except asyncio.CancelledError:  # aiohttp cancels the handler of a client that left
        status = CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - trace.started
        route = route_label(request)
        metrics.in_flight.dec()
        metrics.child(metrics.requests, route, method_label(request.method), str(status)).inc()
        metrics.child(metrics.latency, route).observe(elapsed)
        overhead_s = max(0.0, elapsed - trace.backend_s)
        for instance, retries in trace.retries.items():
            metrics.child(metrics.retries, instance).inc(retries)
        if trace.routed:
            metrics.overhead.observe(overhead_s)
        principal = request.get(REQUEST_PRINCIPAL)
        request_log.info(  # method, path and status once: as fields, not again in the message
            "request",
            extra={
                LINE_FIELDS: {
                    "request_id": trace.request_id,
                    "traceparent": trace.traceparent,
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "overhead_ms": round(overhead_s * 1000, 3) if trace.routed else None,
                    "key_id": principal.key_id if principal else None,
                    "client": principal.client if principal else request.remote,
                    "instance": trace.instance,
                    "model": trace.model,
                    "trace_id": trace.span_ids[0] if trace.span_ids else None,
                    "span_id": trace.span_ids[1] if trace.span_ids else None,
                }
            },
        )
        end_trace(token)


async def _traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler inside the request's server span (tracing on), its caller's
    `traceparent` as the parent; the span gets the request id, key id, instance and model."""
    trace = current_trace()
    assert trace is not None and trace.tracer is not None
    attributes = {
        "http.request.method": request.method,
        "http.route": route_label(request),
        "url.path": request.path,
        "lollms.request_id": trace.request_id,
    }
    name = f"{request.method} {attributes['http.route']}"
    with trace.tracer.server_span(name, request.headers, attributes) as span:
        trace.span_ids = trace.tracer.ids()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            principal = request.get(REQUEST_PRINCIPAL)
            annotate(
                span,
                key_id=principal.key_id if principal else None,
                instance=trace.instance,
                model=trace.model,
            )


def add_trace_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Part of `prepare_answer`: X-Request-Id; X-Lollms-Overhead-Ms after a binding call."""
    trace = current_trace()
    if trace is not None:
        _set_trace_headers(response, trace)


def _set_trace_headers(response: web.StreamResponse, trace: Trace) -> None:
    response.headers["X-Request-Id"] = trace.request_id
    if trace.routed:
        response.headers["X-Lollms-Overhead-Ms"] = f"{trace.overhead_ms():.3f}"


@routes.get("/metrics")
@endpoint("Prometheus metrics (text exposition format)", tag="admin", access="admin")
async def metrics_endpoint(request: web.Request) -> web.Response:
    """Every metric series."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/api/v1/ready")
@endpoint(
    "Readiness: 503 while the server drains or none of its binding instances can serve (each "
    "down or its circuit open); each instance's health and circuit either way",
    tag="lollms",
    access="public",
)
async def readiness(request: web.Request) -> web.Response:
    """Each instance's latest health (the monitor's, or checked now) and circuit state."""
    if request.app[DRAIN].draining:  # a load balancer stops sending before the listener closes
        return web.json_response({"ready": False, "draining": True}, status=503)
    monitor = request.app[MONITOR]
    stale = time.monotonic() - 2 * max(monitor.interval_s, 1.0)
    if not monitor.latest or min(monitor.checked_at.values(), default=0.0) < stale:
        await monitor.check_due()
    monitor.recheck_down_soon(min(monitor.interval_s, READY_RECHECK_S))
    states = {
        name: {
            "state": health.state,
            "circuit": request.app[BREAKERS].of(name).current_state(),
        }
        for name, health in sorted(monitor.latest.items())
    }
    # one instance down does not take the server out: its requests get a 503 naming it (which
    # a load balancer retries elsewhere), while the other instances keep serving
    ready = not states or any(
        s["state"] != "down" and s["circuit"] != "open" for s in states.values()
    )
    return web.json_response({"ready": ready, "instances": states}, status=200 if ready else 503)
