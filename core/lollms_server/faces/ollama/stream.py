"""NDJSON responses of the Ollama face: chunk and final objects, streamed or whole."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from aiohttp import web

from ...bindings import Chunk, Result, ToolCall, Usage, closing_stream
from ...chunks import Accumulator
from ...errors import LollmsError
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.error_middleware import error_body
from ...httpkit.sse import to_json
from ...keys import CONFIG, GENERATION
from ...masking import for_current_caller
from ...registry import Target
from ...service.generation_stream import open_stream
from ...service.prepared import Prepared
from . import models

log = logging.getLogger(__name__)
NDJSON = "application/x-ndjson"


async def stream_ndjson(
    request: web.Request, prepared: Prepared, shape: Shape, headers: dict[str, str]
) -> web.StreamResponse:
    """NDJSON lines; errors before the first token are HTTP errors, later ones `{"error"}`."""
    async with closing_stream(request.app[GENERATION].stream(prepared)) as chunks:
        opened = await open_stream(chunks, prepared)
        chunk = opened.first
        shape.model = models.display_name(opened.served.target)  # a route's fallback may serve
        shape.first_token = time.monotonic()
        response = BurstResponse(
            headers={"Content-Type": NDJSON, **headers},
            stall_s=request.app[CONFIG].request_timeout_s,
        )
        await response.prepare(request)
        folded = Accumulator()
        try:
            while chunk is not None:  # read in place: no helper frame per chunk
                if chunk.type == "chunk":
                    folded.add(chunk)
                    line = shape.delta(chunk)
                    if line is not None:
                        await _write(response, line)
                chunk = await anext(chunks, None)
            await _write(response, shape.final(folded.finish_reason or "stop", folded.usage))
        except ClientGone:
            return response
        except LollmsError as exc:
            await _write_error(response, exc)
        except Exception as exc:  # a bug of ours: the headers are sent, so say it in-stream
            log.exception("stream %s failed", prepared.request.request_id)
            await _write_error(
                response, LollmsError(f"internal server error: {type(exc).__name__}")
            )
    with suppress(ConnectionError):
        await response.write_eof()
    return response


def _write(response: BurstResponse, line: dict[str, Any]) -> Awaitable[None]:
    """One NDJSON line; ClientGone once the client has left."""
    return response.send(to_json(line).encode() + b"\n")


async def _write_error(response: BurstResponse, exc: LollmsError) -> None:
    with suppress(ClientGone):
        await _write(response, error_body("ollama", for_current_caller(exc))[1])


def nanoseconds(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


class Shape:
    """Builds the chunk and final objects of one chat or generate response."""

    def __init__(self, target: Target, *, chat: bool, think: Any) -> None:
        self.model = models.display_name(target)
        self.chat = chat
        self.show_thoughts = think is not False
        self.started = time.monotonic()
        self.first_token: float | None = None

    def head(self) -> dict[str, Any]:
        """The fields every object starts with."""
        return {"model": self.model, "created_at": models.now_rfc3339()}

    def body(self, text: str, thoughts: str | None, calls: tuple[ToolCall, ...]) -> dict[str, Any]:
        """`message` (chat) or `response` (generate) fields."""
        thinking = thoughts if thoughts and self.show_thoughts else None
        if not self.chat:
            return {"response": text, **({"thinking": thinking} if thinking else {})}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = [call.ollama() for call in calls]
        return {"message": message}

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        """One streamed object, or None when the chunk carries nothing to show."""
        fields = self.body(chunk.content, chunk.thoughts, chunk.tool_calls)
        inner = fields.get("message", fields)
        if not (chunk.content or inner.get("thinking") or inner.get("tool_calls")):
            return None
        return {**self.head(), **fields, "done": False}

    def final(
        self, finish: str, usage: Usage | None, result: Result | None = None
    ) -> dict[str, Any]:
        """The closing object: done, done_reason, counts and durations (nanoseconds)."""
        text: str = ""
        thoughts: str | None = None
        calls: tuple[ToolCall, ...] = ()
        if result is not None:
            for output in result.outputs:
                if output.type == "text":
                    text, thoughts = output.text, output.thoughts
                    break
            calls = result.tool_calls
        end = time.monotonic()
        first = self.first_token or self.started
        line: dict[str, Any] = {
            **self.head(),
            **self.body(text, thoughts, calls),
            "done": True,
            "done_reason": "length" if finish == "length" else "stop",
            "total_duration": nanoseconds(end - self.started),
            "load_duration": 0,
            "prompt_eval_duration": nanoseconds(first - self.started),
            "eval_duration": nanoseconds(end - first),
        }
        if usage is not None:
            line["prompt_eval_count"] = usage.prompt_tokens
            line["eval_count"] = usage.completion_tokens
        return line

    def whole(self, result: Result) -> dict[str, Any]:
        """The one object of a non-streamed answer."""
        return self.final(result.finish_reason, result.usage, result)

    def done(self, reason: str) -> dict[str, Any]:
        """The answer to a load or unload request."""
        return {**self.head(), **self.body("", None, ()), "done": True, "done_reason": reason}
