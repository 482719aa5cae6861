"""What a node last said of its load, for the gateway's `least-busy` and `most-room` choices.

Two sources feed it: the headers of every answer of the node (queue depth per busy
`instance/model` lane, free memory) and the periodic `GET /api/v1/status` (the same, plus the
loaded models). The later report wins; a status answer asked for before a fresher header
arrived does not overwrite it.

A route adds this gateway's own generations on the node (its scheduler counts them exactly, as
they start and end) to the node's figure, so the figure it weighs (`depth`) is the node's load
beyond them: each report less our calls the node was counting when it made it. Counted twice,
our calls made a node look busier than it was, by a stale amount (up to the figure of its
latest answer), and `least-busy` sent work to the node with more queued.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
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
        self.queue_depth: int | None = None  # all lanes together, as reported
        self.lanes: dict[str, int] | None = None  # None: the node reports no per-lane figures
        self.others: dict[str, int] = {}  # per lane, beyond our own calls
        self.others_total: int | None = None  # all lanes, beyond our own calls
        self.calls: Counter[str] = Counter()  # our generations in flight, per lane
        self.free_memory: int | None = None
        self.loaded: set[str] = set()
        self.reported_at: float | None = None
        self._marked: dict[str, float] = {}  # lanes we saw load, and when

    @contextlib.contextmanager
    def calling(self, lane: str) -> Iterator[None]:
        """Count one generation of ours on the node's `lane` while the block runs."""
        self.calls[lane] += 1
        try:
            yield
        finally:
            self.calls[lane] -= 1
            if self.calls[lane] <= 0:
                del self.calls[lane]

    def record_headers(self, headers: CIMultiDictProxy[str], answered: str | None = None) -> None:
        """Keep the figures the node put on an answer, less our calls it counted: all those
        in flight but `answered`, the lane of a whole generation whose answer this is (its
        turn on the node is over)."""
        ours = self.calls.copy()
        if answered is not None:
            ours[answered] -= 1
        depth = _int(headers.get(QUEUE_HEADER))
        if depth is not None:
            self.queue_depth = depth
            self.others_total = max(0, depth - sum(ours.values()))
            self.reported_at = time.monotonic()
        lanes = headers.get(MODEL_QUEUE_HEADER)
        if lanes is None and depth is not None:
            lanes = ""  # a node leaves the header out (or sent it empty) when no lane is busy
        if lanes is not None:
            self.lanes = parse_model_queue_header(lanes)
            self.others = _beyond(self.lanes, ours)
            self.reported_at = time.monotonic()
        room = _int(headers.get(FREE_MEMORY_HEADER))
        if room is not None:
            self.free_memory = room

    def record_status(self, status: Mapping[str, Any], asked_at: float) -> None:
        """Keep a `/api/v1/status` answer asked for at `asked_at` (monotonic), unless an answer's
        headers reported since (less our generations in flight when it came)."""
        if self.reported_at is None or self.reported_at <= asked_at:
            queue = status.get("queue_depth")
            if isinstance(queue, dict):
                self.lanes = {k: v for k, v in queue.items() if isinstance(v, int) and v > 0}
                self.queue_depth = sum(self.lanes.values())
                self.others = _beyond(self.lanes, self.calls)
                self.others_total = sum(self.others.values())
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

    def stale(self, fresh_s: float) -> bool:
        """True when the node reported before, but not within the last `fresh_s` seconds."""
        return self.reported_at is not None and time.monotonic() - self.reported_at > fresh_s

    def depth(self, model: str, fresh_s: float = math.inf) -> float | None:
        """Generations of `model` (`instance/model`, or a bare name: every instance's) running
        or queued on the node beyond our own; its total beyond ours when it reports no per-lane
        figures; None before any report; 0 when the report is older than `fresh_s` (other
        clients' work it counted may be over, and a node that looks busy gets none of ours,
        hence no answer that would tell otherwise)."""
        if self.stale(fresh_s):
            return 0.0
        if self.lanes is None:
            return None if self.others_total is None else float(self.others_total)
        if "/" in model:
            return float(self.others.get(model, 0))
        return float(sum(d for lane, d in self.others.items() if lane.partition("/")[2] == model))

    def room(self, lane: str | None, need: int | None) -> Room | None:
        """The node's memory for a model (`need` bytes, nothing when loaded there already);
        None when the node reports no free memory and does not have it loaded."""
        loaded = lane is not None and lane in self.loaded
        if self.free_memory is None:
            return Room(math.inf, loaded=True) if loaded else None
        return Room(float(self.free_memory - (0 if loaded else need or 0)), loaded=loaded)


def describe(status: Mapping[str, Any]) -> str:
    """One line of the node's load for the health detail."""
    queue = status.get("queue_depth") or {}
    busy = sum(v for v in queue.values() if isinstance(v, int)) if isinstance(queue, dict) else 0
    loaded = status.get("loaded") or []
    room = status.get("free_memory_bytes")
    parts = [f"{len(loaded)} loaded", f"queue {busy}"]
    if isinstance(room, int):
        parts.append(f"{room / 2**30:.1f} GiB free")
    return ", ".join(parts)


def _beyond(lanes: Mapping[str, int], ours: Mapping[str, int]) -> dict[str, int]:
    """Each lane's figure less our generations on it (lanes left with none dropped)."""
    left = {lane: count - ours.get(lane, 0) for lane, count in lanes.items()}
    return {lane: count for lane, count in left.items() if count > 0}


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
