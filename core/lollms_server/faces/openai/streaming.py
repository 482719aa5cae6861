"""One streamed answer of the OpenAI face (chat chunks or response events): opened at the first
token, written by a face writer, ended; errors before the first token are plain HTTP errors,
later ones the writer's error event."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Protocol

from aiohttp import web

from ...bindings import Chunk, closing_stream
from ...errors import LollmsError
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.sse import open_sse
from ...keys import GENERATION
from ...service.generation_stream import open_stream
from ...service.prepared import Prepared

log = logging.getLogger(__name__)


class StreamWriter(Protocol):
    """Writes one stream's events."""

    async def run(self, first: Chunk | None, chunks: AsyncIterator[Chunk]) -> None:
        """Send every chunk, then the closing events."""

    async def error(self, exc: LollmsError) -> None:
        """Say an error after the stream started."""


async def stream_answer(
    request: web.Request,
    prepared: Prepared,
    writer_of: Callable[[BurstResponse, Prepared], StreamWriter],
) -> web.StreamResponse:
    """Stream `prepared`'s generation through the writer `writer_of` makes for the response and
    the attempt that serves (on a fallback route, not the first target)."""
    async with closing_stream(request.app[GENERATION].stream(prepared)) as chunks:
        opened = await open_stream(chunks, prepared)
        response = await open_sse(request, {"X-Request-Id": prepared.request.request_id})
        writer = writer_of(response, opened.served)
        try:
            await writer.run(opened.first, chunks)
        except ClientGone:
            return response
        except LollmsError as exc:
            await writer.error(exc)
        except Exception as exc:  # a bug of ours: the headers are sent, so say it in-stream
            log.exception("stream %s failed", prepared.request.request_id)
            await writer.error(LollmsError(f"internal server error: {type(exc).__name__}"))
    with suppress(ConnectionError):
        await response.write_eof()
    return response
