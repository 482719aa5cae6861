"""A tiny OTLP/HTTP trace receiver for tests and benchmarks: a real aiohttp endpoint on a free
loopback port (in its own thread) that decodes the protobuf export requests it gets.

Needs the `[tracing]` extra (opentelemetry-proto).
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .fixtures import free_port

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass
class ReceivedSpan:
    """One span as the receiver decoded it (ids in hex)."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    events: list[str]


@dataclass
class OtlpReceiver:
    """Collects the spans POSTed to `<url>/v1/traces` and the headers of each export."""

    port: int = field(default_factory=free_port)
    spans: list[ReceivedSpan] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """The URL to give `[tracing] endpoint`."""
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def receive(self, request: web.Request) -> web.Response:
        """Decode one export request; answer as a collector does."""
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        decoded = [
            ReceivedSpan(
                service=_service(resource_spans.resource),
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex(),
                name=span.name,
                kind=KINDS.get(span.kind, str(span.kind)),
                attributes={a.key: _value(a.value) for a in span.attributes},
                events=[event.name for event in span.events],
            )
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.lock:
            self.spans.extend(decoded)
            self.headers.append(dict(request.headers))
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    def wait_for(
        self, ready: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans so far once `ready(spans)` holds; AssertionError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                spans = list(self.spans)
            if ready(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}" for s in spans})
                raise AssertionError(f"the spans never arrived; got {names}")
            time.sleep(0.1)

    def clear(self) -> None:
        """Forget what was received."""
        with self.lock:
            self.spans.clear()
            self.headers.clear()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running receiver for the block (usable from sync or async code)."""
    receiver = OtlpReceiver()
    loop = asyncio.new_event_loop()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receiver.receive)
    runner = web.AppRunner(app, access_log=None)
    thread = threading.Thread(target=loop.run_forever, name="otlp-receiver", daemon=True)
    thread.start()  # set up in its own loop too: the caller may be inside a running loop

    async def listen() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", receiver.port).start()

    asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _service(resource: Any) -> str:
    for attribute in resource.attributes:
        if attribute.key == "service.name":
            return str(_value(attribute.value))
    return ""


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
