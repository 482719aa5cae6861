"""The answer of the lollms `generate`: its JSON body, and its SSE stream."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from ...bindings import Chunk, Output, Usage, closing_stream
from ...chunks import Accumulator
from ...errors import LollmsError
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.convert import output_dict, usage_dict
from ...httpkit.sse import hold_event, open_sse, send_event
from ...keys import GENERATION
from ...masking import for_current_caller
from ...service.generation_stream import open_stream
from ...service.prepared import Prepared
from ...service.toolloop import ToolLoop


def response_body(
    prepared: Prepared,
    outputs: Sequence[Output],
    usage: Usage | None,
    finish: str,
    loop: ToolLoop | None = None,
) -> dict[str, Any]:
    body = {
        "personality": prepared.personality.name if prepared.personality else None,
        "request_id": prepared.request.request_id,
        "binding_instance": prepared.target.binding.instance_name,
        "model_name": prepared.target.model,
        "output": [output_dict(o) for o in outputs],
        "usage": usage_dict(usage),
        "finish_reason": finish,
        "execution_time": round(prepared.elapsed_s, 4),
    }
    if loop is not None:
        body["steps"] = [step.to_dict() for step in loop.steps]
    return body


async def stream_answer(
    request: web.Request, prepared: Prepared, loop: ToolLoop | None
) -> web.StreamResponse:
    """SSE events naming the target that serves; an error before the first text chunk (queue
    full or timed out, instance down, circuit open, token limit, first-token timeout) is a
    plain HTTP status, as on every face; a later one an `error` event. Queue-position events
    met before the first chunk are sent right after the `started` event; the binding's
    progress events (a render's steps) open the stream as they come."""
    service = request.app[GENERATION]
    source = loop.run(prepared) if loop is not None else service.stream(prepared)
    async with closing_stream(source) as chunks:
        opened = await open_stream(chunks, prepared, progress_opens=loop is None)
        served = (loop.served or prepared) if loop is not None else opened.served
        response = await open_sse(request, {"X-Request-Id": prepared.request.request_id})
        head = [*opened.early, *([opened.first] if opened.first is not None else [])]
        return await _send_stream(response, served, loop, head, chunks)


async def _send_stream(
    response: BurstResponse,
    prepared: Prepared,
    loop: ToolLoop | None,
    head: list[Chunk],
    rest: AsyncIterator[Chunk],
) -> web.StreamResponse:
    folded = Accumulator()
    try:
        started = _event(
            "info",
            "started",
            request_id=prepared.request.request_id,
            binding=prepared.target.binding.instance_name,
            model=prepared.target.model,
        )
        hold_event(response, started)  # written with the head, which is already here
        for chunk in head:
            await _send_chunk(response, chunk, folded)
        await response.flush()  # the `started` event and the head: the first text must not wait
        async for chunk in rest:
            await _send_chunk(response, chunk, folded)
        if loop is not None:
            outputs, usage, finish = [loop.answer, *loop.media], loop.usage, loop.finish_reason
        else:
            outputs, usage = list(folded.outputs), folded.usage
            finish = folded.finish_reason or "stop"
        final = response_body(prepared, outputs, usage, finish, loop)
        await send_event(
            response,
            {"type": "final", "content": final["output"], "thoughts": None, "metadata": final},
        )
    except LollmsError as exc:
        await _send_error(response, prepared, exc)
    except ClientGone:
        return response
    await response.write_eof()
    return response


async def _send_chunk(response: BurstResponse, chunk: Chunk, folded: Accumulator) -> None:
    """One event: `info`, `function_call`, or `chunk` (text and thoughts, folded in)."""
    if chunk.type == "info":
        await send_event(response, _event("info", chunk.content, **chunk.metadata))
    elif chunk.type == "function_call":
        (call,) = chunk.tool_calls
        await send_event(
            response, _event("function_call", dataclasses.asdict(call), **chunk.metadata)
        )
    elif folded.add(chunk).content or chunk.thoughts:
        await send_event(response, _event("chunk", chunk.content, chunk.thoughts or None))


async def _send_error(response: BurstResponse, prepared: Prepared, exc: LollmsError) -> None:
    exc = for_current_caller(exc)
    try:
        await send_event(response, _event("error", exc.message, error=exc.to_dict()))
        final = {
            "request_id": prepared.request.request_id,
            "status": "error",
            "execution_time": round(prepared.elapsed_s, 4),
        }
        await send_event(
            response, {"type": "final", "content": [], "thoughts": None, "metadata": final}
        )
    except ClientGone:
        pass


def _event(kind: str, content: Any, thoughts: str | None = None, **metadata: Any) -> dict[str, Any]:
    return {"type": kind, "content": content, "thoughts": thoughts, "metadata": metadata}
