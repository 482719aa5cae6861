"""Page streams: a generation prepared by a POST, run and streamed by a GET over SSE.

The POST that starts a chat answer (or an image) prepares the generation and registers it here
under a random id; its partial holds an `hx-ext="sse"` element whose `sse-connect` URL is
`/playground/streams/<id>`. That GET claims the entry (once: a reconnect gets an error, never a
second run), runs `GenerationService.stream` in a task and sends HTML-escaped SSE messages:
`token` and `think` (text), `progress` (binding info), `failure` (the error partial; not
`error`, which EventSource reserves for connection errors), then one `done` whose partial ends
the stream; the client closes on it (`sse-close="done"`). The Stop
button POSTs `/playground/streams/<id>/stop`, which cancels the task: that closes the binding's
stream (the generation is logged as 499). Unclaimed entries expire after `PENDING_TTL_S`; each
caller holds at most `MAX_PENDING_PER_CALLER` of them and `MAX_PENDING_BYTES_PER_CALLER` of
prompts and uploads, so one key's flood of requests evicts only its own; all callers together
hold at most `MAX_PENDING` entries and `MAX_PENDING_BYTES`. A running stream re-reads its key
every `KEY_CHECK_S`: once it is revoked (on any replica) or expired, the generation stops and
the page gets a 401 `failure`, then `done`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..bindings import Chunk, closing_stream
from ..chunks import Accumulator
from ..errors import LollmsError, NotFound, Unauthorized
from ..httpkit.burst import BurstResponse, ClientGone
from ..httpkit.sse import open_sse
from ..keys import GENERATION, KEYSTORE, REQUEST_PRINCIPAL, WEB_STREAMS
from ..masking import for_caller
from ..security.auth import requires
from ..security.principal import current as current_principal
from ..service.generation_stream import ChunkStream
from ..service.prepared import Prepared
from .forms import read_action
from .render import VARY, is_htmx, page_handler, render_string, see_other, sse_message

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PENDING_TTL_S = 120.0
MAX_PENDING = 256  # all callers together: a bound on memory
MAX_PENDING_PER_CALLER = 32
MAX_PENDING_BYTES = 256 * 2**20  # prompts and uploads held by pending entries, all callers
MAX_PENDING_BYTES_PER_CALLER = 64 * 2**20  # one caller's (a larger single request runs alone)
KEY_CHECK_S = 2.0  # how often a running stream checks that its key is still active
DONE_TEMPLATES = {"chat": "_chat_done.html", "image": "_image_result.html"}
END = None


@dataclass
class PageStream:
    """One prepared generation waiting for (or being streamed to) its page."""

    id: str
    prepared: Prepared
    kind: str
    context: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # the key that started it (None: local access)
    size: int = 0  # bytes of its prompts and uploads
    created: float = field(default_factory=time.monotonic)
    claimed: bool = False
    stopped: bool = False
    task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Cancel the generation (closing the binding's stream), or keep it from starting."""
        self.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class StreamRegistry:
    """Page streams by id; unclaimed ones expire, and each caller (a key, or the local
    machine) may hold `per_caller` of them: its excess evicts its own oldest. At the global
    bound `max_pending`, the caller holding the most loses its oldest."""

    def __init__(
        self,
        ttl_s: float = PENDING_TTL_S,
        max_pending: int = MAX_PENDING,
        per_caller: int = MAX_PENDING_PER_CALLER,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.per_caller = per_caller
        self.max_pending_bytes = MAX_PENDING_BYTES
        self.max_pending_bytes_per_caller = MAX_PENDING_BYTES_PER_CALLER
        self.entries: dict[str, PageStream] = {}

    def add(self, prepared: Prepared, kind: str, **context: Any) -> PageStream:
        """Register a prepared generation; return its entry (with a fresh random id)."""
        self._expire()
        owner = _caller()
        size = _size_of(prepared)
        self._make_room(owner, size)
        entry = PageStream(secrets.token_urlsafe(16), prepared, kind, dict(context), owner, size)
        self.entries[entry.id] = entry
        return entry

    def claim(self, stream_id: str) -> PageStream | None:
        """The entry to stream, once; None when unknown, expired, claimed or someone else's."""
        self._expire()
        entry = self.get(stream_id)
        if entry is None or entry.claimed:
            return None
        entry.claimed = True
        return entry

    def get(self, stream_id: str) -> PageStream | None:
        """The entry, claimed or not, if the caller is the key that started it."""
        entry = self.entries.get(stream_id)
        return entry if entry is not None and entry.owner == _caller() else None

    def finish(self, stream_id: str) -> None:
        """Forget a finished stream."""
        self.entries.pop(stream_id, None)

    @property
    def running(self) -> int:
        """How many streams are being sent now."""
        return sum(1 for entry in self.entries.values() if entry.claimed)

    def _expire(self) -> None:
        deadline = time.monotonic() - self.ttl_s
        for entry in [e for e in self.entries.values() if not e.claimed]:
            if entry.created < deadline:
                del self.entries[entry.id]

    def pending_bytes(self) -> int:
        """Bytes of prompts and uploads the pending (unclaimed) entries hold."""
        return sum(entry.size for entry in self.entries.values() if not entry.claimed)

    def _make_room(self, owner: str | None, size: int) -> None:
        """Evict pending entries (oldest first) so that one more of `owner`'s, of `size`
        bytes, fits: in the caller's count and bytes, then in everyone's (the caller holding
        the most bytes, else the most entries, gives first)."""
        by_owner: dict[str | None, list[PageStream]] = {}
        for entry in self.entries.values():  # in creation order
            if not entry.claimed:
                by_owner.setdefault(entry.owner, []).append(entry)
        mine = by_owner.get(owner, [])
        while mine and (
            len(mine) >= self.per_caller or _bytes(mine) + size > self.max_pending_bytes_per_caller
        ):
            del self.entries[mine.pop(0).id]
        held = [entries for entries in by_owner.values() if entries]
        while held and (
            sum(map(len, held)) >= self.max_pending
            or sum(map(_bytes, held)) + size > self.max_pending_bytes
        ):
            largest = max(held, key=lambda entries: (_bytes(entries), len(entries)))
            del self.entries[largest.pop(0).id]
            held = [entries for entries in held if entries]


def _bytes(entries: list[PageStream]) -> int:
    return sum(entry.size for entry in entries)


def _size_of(prepared: Prepared) -> int:
    """Bytes a prepared request holds: its messages' text and images, its inputs."""
    request = prepared.request
    items = [*request.inputs, *(image for m in request.messages for image in m.images)]
    text = sum(len(m.content) for m in request.messages)
    return text + sum(len(item.data) + len(item.text) for item in items)


def _caller() -> str | None:
    principal = current_principal()
    return principal.key_id if principal is not None else None


def send(response: BurstResponse, event: str, payload: str) -> Awaitable[None]:
    """Write one message; a client that went away raises ClientGone."""
    return response.send(sse_message(event, payload))


@routes.get("/playground/streams/{stream_id}")
@requires("user")
async def stream(request: web.Request) -> web.StreamResponse:
    """Run a prepared page generation and stream it as HTML fragments."""
    streams = request.app[WEB_STREAMS]
    entry = streams.claim(request.match_info["stream_id"])
    response = await open_sse(request, {"Cache-Control": "no-store"}, headers_now=True)
    try:
        if entry is None:
            gone = NotFound("this stream has finished or expired; send the request again")
            await send(
                response,
                "failure",
                await render_string(request, "_error.html", _err(request, gone)),
            )
            await send(response, "done", "")
        else:
            try:
                await _run(request, response, entry)
            finally:
                streams.finish(entry.id)
        await response.write_eof()
    except ClientGone:
        pass
    return response


@dataclass
class _Collected:
    """What a stream produced so far, and the error that ended it."""

    folded: Accumulator = field(default_factory=Accumulator)
    error: LollmsError | None = None


async def _run(request: web.Request, response: BurstResponse, entry: PageStream) -> None:
    queue: asyncio.Queue[Chunk | LollmsError | None] = asyncio.Queue()
    chunks = request.app[GENERATION].stream(entry.prepared)
    entry.task = asyncio.create_task(_pump(chunks, entry.prepared, queue))
    # END follows whatever ends the task, even a cancel (Stop) before it ever ran
    entry.task.add_done_callback(lambda _task: queue.put_nowait(END))
    if entry.stopped:
        entry.task.cancel()
    watch = asyncio.create_task(_watch_key(request, entry, queue)) if entry.owner else None
    got = _Collected()
    try:
        while (item := await queue.get()) is not END:
            if isinstance(item, LollmsError):
                got.error = item
            else:
                await _forward(request, response, item, got)
    finally:
        for task in (entry.task, watch):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(entry.task, *filter(None, [watch]), return_exceptions=True)
    if got.error is not None:
        await send(
            response,
            "failure",
            await render_string(request, "_error.html", _err(request, got.error)),
        )
    context = {
        **entry.context,
        "stream_id": entry.id,
        "answer": got.folded.text,
        "thoughts": got.folded.thoughts,
        "outputs": got.folded.media,
        "usage": got.folded.usage,
        "finish_reason": "stopped" if entry.stopped else got.folded.finish_reason,
        "stopped": entry.stopped,
        "failed": got.error is not None,
        "elapsed_s": entry.prepared.elapsed_s,
        "target": chunks.served.target.ref,  # a fallback route's: the target that served
    }
    await send(response, "done", await render_string(request, DONE_TEMPLATES[entry.kind], context))


async def _forward(
    request: web.Request, response: BurstResponse, chunk: Chunk, got: _Collected
) -> None:
    if chunk.type == "info":
        progress = await render_string(
            request, "_progress.html", {"message": chunk.content, "info": dict(chunk.metadata)}
        )
        await send(response, "progress", progress)
        return
    got.folded.add(chunk)
    if chunk.thoughts:
        await send(response, "think", html.escape(chunk.thoughts))
    if chunk.content:
        await send(response, "token", html.escape(chunk.content))


async def _pump(
    stream: ChunkStream,
    prepared: Prepared,
    queue: asyncio.Queue[Chunk | LollmsError | None],
) -> None:
    """Run the generation, putting its chunks (or its error) on the queue."""
    try:
        async with closing_stream(stream) as chunks:
            async for chunk in chunks:
                queue.put_nowait(chunk)
    except LollmsError as exc:
        queue.put_nowait(exc)
    except Exception:  # a bug of ours: logged, reported to the page without internals
        log.exception("page stream %s failed", prepared.request.request_id)
        queue.put_nowait(LollmsError("internal server error; see the server log"))


async def _watch_key(
    request: web.Request, entry: PageStream, queue: asyncio.Queue[Chunk | LollmsError | None]
) -> None:
    """End the entry's generation once its key is no longer active (revoked or expired)."""
    keystore = request.app[KEYSTORE]
    while entry.owner is not None and entry.task is not None and not entry.task.done():
        await asyncio.sleep(KEY_CHECK_S)
        try:
            status = (await keystore.get(entry.owner)).status()
        except NotFound:
            status = "revoked"
        except LollmsError:  # the store is unreachable now: the next check decides
            continue
        if status != "active":
            queue.put_nowait(Unauthorized(f"this key was {status}; the generation was stopped"))
            entry.task.cancel()
            return


def _err(request: web.Request, error: LollmsError) -> dict[str, Any]:
    return {"error": for_caller(error, request.get(REQUEST_PRINCIPAL)), "status": error.status}


@routes.post("/playground/streams/{stream_id}/stop")
@requires("user")
@page_handler
async def stop(request: web.Request) -> web.StreamResponse:
    """Stop a page generation: the stream then ends with what was produced."""
    await read_action(request)
    entry = request.app[WEB_STREAMS].get(request.match_info["stream_id"])
    if entry is None:
        raise NotFound("no running generation with this id; it may have finished")
    entry.stop()
    if is_htmx(request):
        return web.Response(status=204, headers=VARY)
    return see_other("/playground/chat" if entry.kind == "chat" else "/playground/image")
