"""A generation's chunk stream, which knows the attempt its chunks come from, and the one way
every face opens it: errors before the first text chunk are raised (an HTTP status), never
sent as an event of a stream already answered 200."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..chunks import Chunk

if TYPE_CHECKING:
    from .prepared import Prepared


class ChunkStream(AsyncIterator[Chunk]):
    """The chunks of one generation; `served` is the attempt they come from (the prepared
    request itself until an attempt starts, then the fallback target that serves)."""

    def __init__(
        self,
        prepared: Prepared,
        produce: Callable[[ChunkStream], AsyncGenerator[Chunk, None]],
    ) -> None:
        self.served = prepared
        self._chunks = produce(self)

    def __aiter__(self) -> ChunkStream:
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        return self._chunks.__anext__()  # the generator's own awaitable: no frame in between

    async def aclose(self) -> None:
        """Close the generation (and the binding's stream)."""
        await self._chunks.aclose()


@dataclass
class Opened:
    """A stream past its first text chunk: the events before it, that chunk, and the rest."""

    served: Prepared
    early: list[Chunk] = field(default_factory=list)
    first: Chunk | None = None


async def open_stream(
    chunks: AsyncIterator[Chunk], served: Prepared, *, progress_opens: bool = False
) -> Opened:
    """Read up to the first text chunk (keeping info events met on the way); an error on the
    way propagates, so the face answers it with its HTTP status. `served` is updated from a
    ChunkStream (the attempt that produced the first chunk). With `progress_opens` (a face
    that shows progress), the binding's first progress event opens the stream too: a render
    that reports steps is running, and its steps must reach the client as they happen."""
    opened = Opened(served)
    async for chunk in chunks:
        if chunk.type == "chunk" or (progress_opens and _is_progress(chunk)):
            opened.first = chunk
            break
        opened.early.append(chunk)
    if isinstance(chunks, ChunkStream):
        opened.served = chunks.served
    return opened


def _is_progress(chunk: Chunk) -> bool:
    """An info event of the binding at work (not the core's queue position)."""
    return chunk.type == "info" and "queue_position" not in chunk.metadata
