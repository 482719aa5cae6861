"""What a node last said of its load, for the gateway's `least-busy` and `most-room` choices.

Two sources feed it: the headers of every answer of the node (queue depth per busy
`instance/model` lane, free memory) and the periodic `GET /api/v1/status` (the same, plus the
loaded models). The later report wins; a status answer asked for before a fresher header
arrived does not overwrite it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from multidict import CIMultiDictProxy

from lollms_server.sdk import (
    FREE_MEMORY_HEADER,
    MODEL_QUEUE_HEADER,
    QUEUE_HEADER,
    Room,
    parse_model_queue_header,
)


class NodeLoad:
    """A node's latest queue depths (total and per lane), free memory and loaded models."""

    def __init__(self) -> None:
        self.queue_depth: int | None = None  # all lanes together
        self.lanes: dict[str, int] | None = None  # None: the node reports no per-lane figures
        self.free_memory: int | None = None
        self.loaded: set[str] = set()
        self.reported_at: float | None = None
        self._marked: dict[str, float] = {}  # lanes we saw load, and when

    def record_headers(self, headers: CIMultiDictProxy[str]) -> None:
        """Keep the figures the node put on an answer."""
        depth = _int(headers.get(QUEUE_HEADER))
        if depth is not None:
            self.queue_depth = depth
            self.reported_at = time.monotonic()
        lanes = headers.get(MODEL_QUEUE_HEADER)
        if lanes is not None:
            self.lanes = parse_model_queue_header(lanes)
            self.reported_at = time.monotonic()
        room = _int(headers.get(FREE_MEMORY_HEADER))
        if room is not None:
            self.free_memory = room

    def record_status(self, status: Mapping[str, Any], asked_at: float) -> None:
        """Keep a `/api/v1/status` answer asked for at `asked_at` (monotonic), unless an answer's
        headers reported since."""
        if self.reported_at is None or self.reported_at <= asked_at:
            queue = status.get("queue_depth")
            if isinstance(queue, dict):
                self.lanes = {k: v for k, v in queue.items() if isinstance(v, int) and v > 0}
                self.queue_depth = sum(self.lanes.values())
                self.reported_at = asked_at
            room = status.get("free_memory_bytes")
            self.free_memory = room if isinstance(room, int) else self.free_memory
        loaded = status.get("loaded")
        if isinstance(loaded, list):
            fresh = {lane for lane, at in self._marked.items() if at > asked_at}
            self.loaded = {m for m in loaded if isinstance(m, str)} | fresh

    def mark_loaded(self, lane: str) -> None:
        """The node just served or loaded `lane`: it is in its memory."""
        self.loaded.add(lane)
        self._marked[lane] = time.monotonic()

    def mark_unloaded(self, lane: str) -> None:
        """The node just unloaded `lane`."""
        self.loaded.discard(lane)
        self._marked.pop(lane, None)

    @contextlib.asynccontextmanager
    async def streaming(self, lane: str, started_at: float) -> AsyncIterator[None]:
        """Around one of our streams: once it ends, a figure reported since it started (its own
        answer's headers among them) counted it, so it no longer does."""
        try:
            yield
        finally:
            count = (self.lanes or {}).get(lane, 0)
            if self.reported_at is not None and self.reported_at >= started_at and count > 0:
                assert self.lanes is not None
                self.lanes[lane] = count - 1
                self.queue_depth = max(0, (self.queue_depth or 1) - 1)

    def depth(self, model: str) -> float | None:
        """Generations of `model` (`instance/model`, or a bare name: every instance's) running
        or queued on the node; the node's total when it reports no per-lane figures."""
        if self.lanes is None:
            return None if self.queue_depth is None else float(self.queue_depth)
        if "/" in model:
            return float(self.lanes.get(model, 0))
        return float(sum(d for lane, d in self.lanes.items() if lane.partition("/")[2] == model))

    def room(self, lane: str | None, need: int | None) -> Room | None:
        """The node's memory for a model (`need` bytes, nothing when loaded there already);
        None when the node reports no free memory and does not have it loaded."""
        loaded = lane is not None and lane in self.loaded
        if self.free_memory is None:
            return Room(math.inf, loaded=True) if loaded else None
        return Room(float(self.free_memory - (0 if loaded else need or 0)), loaded=loaded)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
