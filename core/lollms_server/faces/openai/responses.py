"""OpenAI's Responses API, stateless: `POST /v1/responses`, whole or as typed SSE events.

The request becomes the same generation as a chat completion (see `schemas_responses.py`);
the answer is a `response` object whose `output` holds a reasoning item (when the model
thinks), a message item and one `function_call` item per tool call. Nothing is stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from aiohttp import web

from ...bindings import Chunk, Usage
from ...chunks import Accumulator, ToolCall
from ...errors import LollmsError
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.endpoint import endpoint
from ...httpkit.error_middleware import error_body
from ...httpkit.sse import to_json
from ...json_encoding import dumps
from ...keys import GENERATION, REGISTRY
from ...masking import for_current_caller
from ...openai_names import resolve_model
from ...service.prepared import Prepared
from .schemas_responses import ResponseSchema
from .streaming import stream_answer
from .tools import personality_and_model, tool_parameters

routes = web.RouteTableDef()


@routes.post("/v1/responses")
@endpoint(
    "Responses API (stateless): a response object, or typed SSE events when stream is true",
    tag="openai",
    body=ResponseSchema,
    streams=True,
    media_body=True,
    generates=True,
)
async def create_response(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Generate a response to `input` (`<personality>@<model>` or `personality` applies one)."""
    personality, ref = personality_and_model(body)
    target = await resolve_model(request.app[REGISTRY], "ttt", ref)
    if any(m.images for m in body["messages"]):
        target.require("vision", "read images", "input")
    tools = tool_parameters(
        body["chat_tools"], body["chat_tool_choice"], body["parallel_tool_calls"], target
    )
    prepared = await request.app[GENERATION].prepare(
        face="openai",
        generation_type="ttt",
        target=target,
        messages=body["messages"],
        parameters={**body["parameters"], **tools},
        personality=personality,
    )
    if body["stream"]:
        return await _stream(request, prepared, body)
    prepared, result = await request.app[GENERATION].run(prepared)
    shape = ResponseShape(prepared, body)
    text = result.text
    items = shape.items(text.text, text.thoughts or "", result.tool_calls)
    answer = shape.response(items, result.usage, result.finish_reason)
    headers = {"X-Request-Id": prepared.request.request_id}
    return web.json_response(answer, headers=headers, dumps=dumps)


class ResponseShape:
    """Builds the `response` object and its output items for one request."""

    def __init__(self, prepared: Prepared, body: dict[str, Any]) -> None:
        self.id = "resp_" + prepared.request.request_id
        self.model = prepared.target.ref
        self.created_at = int(time.time())
        self.body = body

    def item_id(self, prefix: str) -> str:
        """A new output item id."""
        return f"{prefix}_{uuid.uuid4().hex}"

    def items(self, text: str, thoughts: str, calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
        """The finished output items of a whole answer."""
        items = [self.reasoning(self.item_id("rs"), thoughts)] if thoughts else []
        if text or not calls:
            items.append(self.message(self.item_id("msg"), text))
        items.extend(self.call(call) for call in calls)
        return items

    def reasoning(self, item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
        """A reasoning item."""
        content = [{"type": "reasoning_text", "text": text}] if status != "in_progress" else []
        item = {"type": "reasoning", "id": item_id, "summary": [], "content": content}
        return {**item, "status": status} if status == "incomplete" else item

    def message(self, item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
        """An assistant message item."""
        content = [self.text_part(text)] if status != "in_progress" else []
        return {
            "type": "message",
            "id": item_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def text_part(self, text: str) -> dict[str, Any]:
        """An `output_text` content part."""
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def call(self, call: ToolCall, status: str = "completed") -> dict[str, Any]:
        """A function_call item."""
        return {
            "type": "function_call",
            "id": "fc_" + call.id,
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments_json if status != "in_progress" else "",
            "status": status,
        }

    def response(
        self,
        output: list[dict[str, Any]],
        usage: Usage | None,
        finish: str | None,
        *,
        status: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The `response` object; `finish` "length" makes it incomplete, and its last output
        item, the one max_output_tokens cut, too (as OpenAI says)."""
        body = self.body
        if status is None:
            status = "incomplete" if finish == "length" else "completed"
        if status == "incomplete" and output:
            output = [*output[:-1], {**output[-1], "status": "incomplete"}]
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "instructions": body["instructions"],
            "max_output_tokens": body["max_output_tokens"],
            "parallel_tool_calls": body["parallel_tool_calls"] is not False,
            "temperature": body["temperature"],
            "top_p": body["top_p"],
            "tool_choice": body["tool_choice"] or "auto",
            "tools": body["tools"] or [],
            "text": {"format": (body["text"] or {}).get("format") or {"type": "text"}},
            "reasoning": body["reasoning"] or {"effort": None, "summary": None},
            "store": False,  # nothing is kept
            "metadata": body["metadata"] or {},
            "truncation": body["truncation"] or "disabled",
            "user": body["user"],
            "usage": _usage(usage),
        }


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _stream(
    request: web.Request, prepared: Prepared, body: dict[str, Any]
) -> Awaitable[web.StreamResponse]:
    """Typed events naming the target that serves."""

    def writer_of(response: BurstResponse, served: Prepared) -> _EventWriter:
        return _EventWriter(response, ResponseShape(served, body))

    return stream_answer(request, prepared, writer_of)


class _EventWriter:
    """Writes one response's events in order: created, each item opened, its deltas and done,
    then completed (or incomplete); every event numbered."""

    def __init__(self, response: BurstResponse, shape: ResponseShape) -> None:
        self.response = response
        self.shape = shape
        self.sequence = 0
        self.done: list[dict[str, Any]] = []  # finished items
        self.kind = ""  # the open text item's type: "message", "reasoning" or none
        self.item_id = ""
        self.texts: list[str] = []

    def _event(self, kind: str, **fields: Any) -> bytes:
        fields = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {to_json(fields)}\n\n".encode()

    async def send(self, kind: str, **fields: Any) -> None:
        """One event."""
        await self.response.send(self._event(kind, **fields))

    async def run(self, first: Chunk | None, chunks: AsyncIterator[Chunk]) -> None:
        """Send every chunk's events, then the closing ones."""
        opening = self.shape.response([], None, None, status="in_progress")
        self.response.hold(self._event("response.created", response=opening))
        self.response.hold(self._event("response.in_progress", response=opening))
        folded, chunk = Accumulator(), first
        while chunk is not None:
            if chunk.type == "chunk":
                folded.add(chunk)
                if chunk.thoughts:
                    await self._text("reasoning", chunk.thoughts)
                if chunk.content:
                    await self._text("message", chunk.content)
                for index, call in enumerate(chunk.tool_calls, 1):
                    cut = chunk.finish_reason == "length" and index == len(chunk.tool_calls)
                    await self._call(call, "incomplete" if cut else "completed")
            if chunk is first:  # after the opening events: the first text must not wait
                await self.response.flush()
            chunk = await anext(chunks, None)
        if not self.done and not self.kind:
            await self._open("message")  # an empty answer is still one message
        await self._close("incomplete" if folded.finish_reason == "length" else "completed")
        answer = self.shape.response(self.done, folded.usage, folded.finish_reason)
        await self.send(f"response.{answer['status']}", response=answer)

    async def _text(self, kind: str, delta: str) -> None:
        if self.kind != kind:
            await self._close()
            await self._open(kind)
        self.texts.append(delta)
        delta_kind = "output_text" if kind == "message" else "reasoning_text"
        await self.send(f"response.{delta_kind}.delta", **self._where(), delta=delta, logprobs=[])

    async def _open(self, kind: str) -> None:
        self.kind, self.texts = kind, []
        self.item_id = self.shape.item_id("msg" if kind == "message" else "rs")
        maker = self.shape.message if kind == "message" else self.shape.reasoning
        item = maker(self.item_id, "", "in_progress")
        await self.send("response.output_item.added", output_index=len(self.done), item=item)
        await self.send("response.content_part.added", **self._where(), part=self._part(""))

    def _part(self, text: str) -> dict[str, Any]:
        if self.kind == "message":
            return self.shape.text_part(text)
        return {"type": "reasoning_text", "text": text}

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": len(self.done), "content_index": 0}

    async def _close(self, status: str = "completed") -> None:
        """Finish the open text item, if any (`status` "incomplete": max_output_tokens cut it)."""
        if not self.kind:
            return
        text = "".join(self.texts)
        delta_kind = "output_text" if self.kind == "message" else "reasoning_text"
        await self.send(f"response.{delta_kind}.done", **self._where(), text=text, logprobs=[])
        await self.send("response.content_part.done", **self._where(), part=self._part(text))
        maker = self.shape.message if self.kind == "message" else self.shape.reasoning
        item = maker(self.item_id, text, status)
        await self.send("response.output_item.done", output_index=len(self.done), item=item)
        self.done.append(item)
        self.kind = ""

    async def _call(self, call: ToolCall, status: str) -> None:
        await self._close()
        index, item_id = len(self.done), "fc_" + call.id
        opened = self.shape.call(call, "in_progress")
        await self.send("response.output_item.added", output_index=index, item=opened)
        arguments = call.arguments_json
        where = {"item_id": item_id, "output_index": index}
        await self.send("response.function_call_arguments.delta", **where, delta=arguments)
        await self.send(
            "response.function_call_arguments.done", **where, name=call.name, arguments=arguments
        )
        item = self.shape.call(call, status)
        await self.send("response.output_item.done", output_index=index, item=item)
        self.done.append(item)

    async def error(self, exc: LollmsError) -> None:
        """An error after the stream started: the open item closed as incomplete, an `error`
        event, then `response.failed` with the items streamed so far (as OpenAI's)."""
        error = error_body("openai", for_current_caller(exc))[1]["error"]
        try:
            await self._close("incomplete")
            await self.send(
                "error", code=error["code"], message=error["message"], param=error["param"]
            )
            failed = {
                "code": _failure_code(exc),
                "message": error["message"],
                "param": error["param"],
                "type": error["code"],
            }
            answer = self.shape.response(self.done, None, None, status="failed", error=failed)
            await self.send("response.failed", response=answer)
        except ClientGone:
            pass


def _failure_code(exc: LollmsError) -> str:
    """The `response.error` code: one of the values OpenAI's `ResponseError` allows."""
    if exc.status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if exc.status in (400, 413, 422) else "server_error"
