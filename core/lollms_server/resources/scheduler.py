"""Per-model concurrency with a bounded priority queue (FIFO within a priority).

A full queue is shared fairly: a caller (a key, or an address without one) who holds fewer of
its places than another caller gets in, and the last place of the caller who holds the most
gives way (that request gets the 503 a full queue answers). One caller alone may fill the whole
queue; it cannot keep the others out of it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import partial

from ..chunks import Chunk
from ..errors import Overloaded
from ..offloop import ThreadWork

ADMIN_PRIORITY = 0
MAX_LANES = 1024  # past this many lanes, idle ones (only their wait estimates) are dropped
USER_PRIORITY = 1


@dataclass(order=True)
class Ticket:
    """A place in a lane's queue; `granted` is set when the generation may run."""

    priority: int
    sequence: int
    granted: asyncio.Event = field(default_factory=asyncio.Event, compare=False)
    moved: asyncio.Event = field(default_factory=asyncio.Event, compare=False)
    granted_at: float = field(default=0.0, compare=False)
    entered_at: float = field(default_factory=time.monotonic, compare=False)
    owner: str = field(default="", compare=False)  # the caller: its key, else its address
    refused: Overloaded | None = field(default=None, compare=False)  # its place gave way

    def grant(self) -> None:
        """Let this ticket's generation run."""
        self.granted_at = time.monotonic()
        self.granted.set()


class Lane:
    """One model's slots: at most `capacity` run; up to `queue_size` wait, best priority first."""

    def __init__(self, name: str, capacity: int, queue_size: int) -> None:
        self.name = name
        self.capacity = max(1, capacity)
        self.queue_size = queue_size
        self.active = 0
        self.waiting: list[Ticket] = []
        self.durations: deque[float] = deque(maxlen=20)
        self._sequence = itertools.count()

    def enter(self, priority: int, owner: str = "") -> Ticket:
        """Take a slot now, or a place in the queue; a full queue is a 503 with Retry-After
        unless another caller holds more of it (see the module docstring)."""
        ticket = Ticket(priority, next(self._sequence), owner=owner)
        if self.active < self.capacity and not self.waiting:
            self.active += 1
            ticket.grant()
            return ticket
        if len(self.waiting) >= self.queue_size and not self._give_way(owner):
            raise self._full()
        heapq.heappush(self.waiting, ticket)
        self._notify_moves()
        return ticket

    def _full(self, why: str = "") -> Overloaded:
        return Overloaded(
            f"the queue of {self.name} is full ({self.queue_size} waiting, {self.active} "
            f"running){why}; retry later",
            retry_after=self.estimated_wait_s(len(self.waiting)) or 1.0,
        )

    def _give_way(self, owner: str) -> bool:
        """Free the last place of the caller holding the most of the queue when it holds at
        least two more than `owner`; True when a place was freed."""
        held = Counter(ticket.owner for ticket in self.waiting)
        hog, most = held.most_common(1)[0] if held else ("", 0)
        if most < held[owner] + 2:
            return False
        last = max(ticket for ticket in self.waiting if ticket.owner == hog)
        self.waiting.remove(last)
        heapq.heapify(self.waiting)
        last.refused = self._full(
            f"; this request held the last of its caller's {most} places and gave it to "
            "another caller"
        )
        last.moved.set()
        return True

    def position(self, ticket: Ticket) -> int:
        """1-based place of a waiting ticket (0 once granted)."""
        if ticket.granted.is_set():
            return 0
        return 1 + sum(1 for other in self.waiting if other < ticket)

    def estimated_wait_s(self, position: int) -> float | None:
        """Rough wait for a place in the queue, from recent generation durations."""
        if not self.durations:
            return None
        average = sum(self.durations) / len(self.durations)
        return round(average * position / self.capacity, 2)

    def leave(self, ticket: Ticket, duration_s: float | None = None) -> None:
        """Give back a slot (or a queue place) and let the next waiter in."""
        if ticket.granted.is_set():
            self.active -= 1
            if duration_s is not None:
                self.durations.append(duration_s)
        elif ticket in self.waiting:
            self.waiting.remove(ticket)
            heapq.heapify(self.waiting)
        while self.waiting and self.active < self.capacity:
            self.active += 1
            heapq.heappop(self.waiting).grant()
        self._notify_moves()

    def _notify_moves(self) -> None:
        for waiter in self.waiting:
            waiter.moved.set()


class Waiting:
    """A ticket in `lane` held for an `async with` block (a class: a generator-based context
    manager costs an async generator per request); with `work`, held past the block until the
    threads its binding call started have ended (a cancelled call leaves them running)."""

    __slots__ = ("lane", "owner", "priority", "ticket", "work")

    def __init__(
        self, lane: Lane, priority: int, owner: str = "", work: ThreadWork | None = None
    ) -> None:
        self.lane, self.priority, self.owner, self.work = lane, priority, owner, work

    async def __aenter__(self) -> Ticket:
        self.ticket = self.lane.enter(self.priority, self.owner)
        return self.ticket

    async def __aexit__(self, *exc_info: object) -> None:
        if self.work is None:
            self._leave(self.ticket)
        else:
            self.work.then(partial(self._leave, self.ticket))

    def _leave(self, ticket: Ticket) -> None:
        ran = ticket.granted.is_set()
        self.lane.leave(ticket, time.monotonic() - ticket.granted_at if ran else None)


class NoTurns:
    """An empty async iterator: the queue positions of a ticket granted at once."""

    def __aiter__(self) -> NoTurns:
        return self

    async def __anext__(self) -> int:
        raise StopAsyncIteration


NO_TURNS = NoTurns()


def queued_at(lane: Lane, position: int) -> Chunk:
    """The `info` event of a request waiting in `lane` at `position`."""
    return Chunk(
        type="info",
        content=f"queued at position {position}",
        metadata={"queue_position": position, "estimated_wait_s": lane.estimated_wait_s(position)},
    )


class Scheduler:
    """The lanes of every (instance, model), created on first use."""

    def __init__(self, queue_size: int = 64, queue_timeout_s: float = 300.0) -> None:
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self.lanes: dict[tuple[str, str], Lane] = {}

    def lane(self, instance: str, model: str, capacity: int) -> Lane:
        """The lane of one model of one instance."""
        key = (instance, model)
        lane = self.lanes.get(key)
        if lane is None:
            if len(self.lanes) >= MAX_LANES:  # model names come from clients: forget idle lanes
                for idle in [k for k, v in self.lanes.items() if not v.active and not v.waiting]:
                    del self.lanes[idle]
            lane = self.lanes[key] = Lane(f"{instance}/{model}", capacity, self.queue_size)
        return lane

    def queue_depth(self) -> dict[tuple[str, str], int]:
        """How many wait in each lane."""
        return {key: len(lane.waiting) for key, lane in self.lanes.items()}

    def waiting(
        self, lane: Lane, priority: int, owner: str = "", work: ThreadWork | None = None
    ) -> Waiting:
        """Hold a ticket for the block; leaving early (disconnect, error) frees its place once
        the threads of `work` have ended."""
        return Waiting(lane, priority, owner, work)

    async def wait_turn(self, lane: Lane, ticket: Ticket, deadline: float) -> int | None:
        """Wait until granted (None) or until the ticket moves (its new position)."""
        if ticket.granted.is_set():
            return None
        if ticket.refused is not None:
            raise ticket.refused
        ticket.moved.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Overloaded(
                f"waited {self.queue_timeout_s:g}s in the queue of {lane.name} without a slot",
                retry_after=lane.estimated_wait_s(lane.position(ticket)) or 1.0,
            )
        granted = asyncio.ensure_future(ticket.granted.wait())
        moved = asyncio.ensure_future(ticket.moved.wait())
        try:
            await asyncio.wait({granted, moved}, timeout=remaining, return_when="FIRST_COMPLETED")
        finally:
            granted.cancel()
            moved.cancel()
        if ticket.refused is not None:
            raise ticket.refused
        return None if ticket.granted.is_set() else lane.position(ticket)
