"""Per-request trace: request id, time spent waiting on bindings, first-token time."""

from __future__ import annotations

import contextvars
import random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tracing_types import Tracer

CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # short and printable, whole
UUID4_BITS = ~(0xC000 << 48 | 0xF000 << 64), 0x8000 << 48 | 0x4000 << 64  # variant, version
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # W3C trace context
HOPS_HEADER = "X-Lollms-Hops"  # lollms-servers a request went through before this one
MAX_HOPS = 8  # a request that went through this many is not passed on (a fleet loop)


@dataclass
class Trace:
    """What the observability middleware learns about one request while it runs."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    backend_s: float = 0.0
    instance: str | None = None
    model: str | None = None
    first_token_s: float | None = None
    retries: dict[str, int] = field(default_factory=dict)
    traceparent: str | None = None  # the client's W3C `traceparent`, passed on to upstreams
    tracer: Tracer | None = None  # OpenTelemetry, when `[tracing]` is on (see tracing.py)
    span_ids: tuple[str, str] | None = None  # the server span's (trace id, span id), when traced
    hops: int = 0  # lollms-servers the request went through before this one (`HOPS_HEADER`)

    @property
    def routed(self) -> bool:
        """True once the request reached a binding (a target was resolved or called)."""
        return self.instance is not None or self.model is not None

    def overhead_ms(self) -> float:
        """Milliseconds spent in lollms-server itself so far (total minus binding time)."""
        return max(0.0, (time.perf_counter() - self.started - self.backend_s) * 1000)

    def waited_on(self, instance: str, started: float) -> None:
        """Count the time since `started` (`time.perf_counter`) as time spent on a binding."""
        self.backend_s += time.perf_counter() - started
        self.instance = instance

    def waited_for_slot(self, seconds: float) -> None:
        """Count a wait in a model's queue as time spent on the binding, not in the server."""
        self.backend_s += max(0.0, seconds)


def new_id() -> str:
    """A random id shaped as `uuid.uuid4().hex`, without a UUID object or a system call: a
    request id names a request, it grants nothing (a client may choose its own), so it needs
    uniqueness, not a cryptographic source (`random` is seeded from urandom in each process)."""
    return f"{random.getrandbits(128) & UUID4_BITS[0] | UUID4_BITS[1]:032x}"


_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "lollms_trace", default=None
)


def start_trace(
    client_request_id: str | None, traceparent: str | None = None, hops: str | None = None
) -> tuple[Trace, contextvars.Token[Trace | None]]:
    """Begin a request's trace; a sane client `X-Request-Id` is kept, else a new id is made;
    a well-formed `traceparent` is kept to pass on, and a hop count of 1-2 digits."""
    ok = client_request_id is not None and CLIENT_REQUEST_ID.fullmatch(client_request_id)
    trace = Trace(request_id=client_request_id if ok and client_request_id else new_id())
    if hops is not None and hops.isdigit() and len(hops) <= 2:
        trace.hops = int(hops)
    if traceparent is not None and TRACEPARENT.fullmatch(traceparent):
        trace.traceparent = traceparent
    return trace, _current.set(trace)


def end_trace(token: contextvars.Token[Trace | None]) -> None:
    """Forget the current trace."""
    _current.reset(token)


def current_trace() -> Trace | None:
    """The running request's trace, if any."""
    return _current.get()


def count_retry(instance: str) -> None:
    """Note that a call to `instance`'s backend is being retried (for the metrics)."""
    trace = _current.get()
    if trace is not None:
        trace.retries[instance] = trace.retries.get(instance, 0) + 1
