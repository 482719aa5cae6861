"""The OpenAI-compatible API under /v1/: models, chat, legacy completions, embeddings.

Model ids are `<instance>/<model>`; a bare name (or none) goes through `[defaults]`. Which request
fields are honoured, passed on, ignored or refused is listed in `schemas.py`. Images and
audio live in `media.py`; `routes` holds both modules' routes.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from ...bindings import (
    ChatMessage,
    Chunk,
    Result,
    ToolCall,
    Usage,
    link_tool_results,
)
from ...chunks import Accumulator
from ...errors import BackendError, InvalidRequest, LollmsError
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.convert import usage_dict
from ...httpkit.endpoint import endpoint
from ...httpkit.error_middleware import error_body
from ...httpkit.sse import SLOT, EventTemplate, hold_event, send_event
from ...json_encoding import dumps
from ...keys import GENERATION, REGISTRY
from ...masking import for_current_caller
from ...openai_names import resolve_model
from ...security.ratelimit import text_tokens
from ...service.prepared import Prepared
from . import media as openai_media
from . import models as openai_models
from . import responses as openai_responses
from .schemas import ChatCompletionSchema, CompletionSchema, EmbeddingSchema
from .streaming import stream_answer
from .tools import personality_and_model, tool_parameters

TAG = "openai"
text_routes = web.RouteTableDef()


@text_routes.post("/v1/chat/completions")
@endpoint(
    "Chat completion; SSE chunks ending in `[DONE]` when stream is true",
    tag=TAG,
    body=ChatCompletionSchema,
    streams=True,
    media_body=True,
    generates=True,
)
async def chat_completions(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Run a chat completion (`<personality>@<model>` or `personality` applies a personality)."""
    personality, ref = personality_and_model(body)
    app = request.app
    target = await resolve_model(app[REGISTRY], "ttt", ref)
    messages = link_tool_results(body["messages"])
    if any(m.images for m in messages):
        target.require("vision", "read images", "messages")
    tools = tool_parameters(body["tools"], body["tool_choice"], body["parallel_tool_calls"], target)
    parameters = {**body["parameters"], **tools}
    prepared = await app[GENERATION].prepare(
        face="openai",
        generation_type="ttt",
        target=target,
        messages=messages,
        parameters=parameters,
        personality=personality,
    )
    shape_of = FunctionCallShape if body["legacy_functions"] else ChatShape
    if body["stream"]:
        return await _stream(request, prepared, shape_of, body["include_usage"])
    prepared, result = await app[GENERATION].run(prepared)
    text, thoughts = _text_of(result)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if thoughts:
        message["reasoning_content"] = thoughts
    shape = shape_of(prepared)
    if result.tool_calls:
        message.update(shape.calls(result.tool_calls), content=text or None)
    finish = shape.finish(result.finish_reason, bool(result.tool_calls))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return _json(prepared, shape.envelope("chat.completion", [choice], result.usage))


@text_routes.post("/v1/completions")
@endpoint(
    "Legacy text completion of a raw prompt; SSE when stream is true",
    tag=TAG,
    body=CompletionSchema,
    streams=True,
    generates=True,
)
async def completions(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Complete a raw prompt (no chat template, no personality)."""
    target = await resolve_model(request.app[REGISTRY], "ttt", body["model"])
    prompt = body["prompt"][0]
    prepared = await request.app[GENERATION].prepare(
        face="openai",
        generation_type="ttt",
        target=target,
        messages=[ChatMessage("user", prompt)],
        parameters=body["parameters"],
        raw_prompt=True,
    )
    prefix = prompt if body["echo"] else ""
    if body["stream"]:
        shape_of = partial(CompletionShape, prefix=prefix)
        return await _stream(request, prepared, shape_of, body["include_usage"])
    prepared, result = await request.app[GENERATION].run(prepared)
    shape = CompletionShape(prepared, prefix)
    text = shape.prefix + _text_of(result)[0]
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": result.finish_reason}
    return _json(prepared, shape.envelope("text_completion", [choice], result.usage))


@text_routes.post("/v1/embeddings")
@endpoint("Embedding vectors of texts (float or base64 float32)", tag=TAG, body=EmbeddingSchema)
async def embeddings(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Embed one text or a list of texts with a binding that has the embeddings capability."""
    target = await resolve_model(request.app[REGISTRY], "ttt", body["model"])
    target.require("embeddings", "make embeddings", "model")
    texts: list[str] = body["input"]
    if any(not text for text in texts):
        raise InvalidRequest("input must not contain empty strings", param="input")
    target, vectors = await request.app[GENERATION].model_call(
        target,
        lambda served: served.binding.embed(texts, served.model),
        texts=texts,
        keep_alive=body["keep_alive"],
        needs="embeddings",
    )
    binding = target.binding
    if len(vectors) != len(texts):
        raise BackendError(
            f"binding {binding.instance_name!r} returned {len(vectors)} vectors "
            f"for {len(texts)} inputs",
            binding=binding.instance_name,
        )
    wanted = body["dimensions"]
    if wanted is not None and vectors and len(vectors[0]) != wanted:
        raise InvalidRequest(
            f"{target.ref} makes {len(vectors[0])}-dimensional vectors, not "
            f"{wanted}; omit dimensions or send {len(vectors[0])}",
            param="dimensions",
        )
    encode = _base64_floats if body["encoding_format"] == "base64" else _floats
    data = [
        {"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)
    ]
    # bindings do not count embedding tokens: usage is what the key is charged for them
    tokens = text_tokens(texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return web.json_response({"object": "list", "data": data, "model": target.ref, "usage": usage})


def _base64_floats(vector: list[float]) -> Any:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _floats(vector: list[float]) -> Any:
    return [float(v) for v in vector]


def _text_of(result: Result) -> tuple[str, str | None]:
    for output in result.outputs:
        if output.type == "text":
            return output.text, output.thoughts
    return "", None


def _json(prepared: Prepared, body: dict[str, Any]) -> web.Response:
    headers = {"X-Request-Id": prepared.request.request_id}
    return web.json_response(body, headers=headers, dumps=dumps)  # json.dumps' text


class ChatShape:
    """Builds chat.completion objects and chunks for one request."""

    prefix = ""
    id_prefix = "chatcmpl-"
    chunk_object = "chat.completion.chunk"

    def __init__(self, prepared: Prepared) -> None:
        self.id = self.id_prefix + prepared.request.request_id
        self.model = prepared.target.ref
        self.created = int(time.time())

    def envelope(self, kind: str, choices: list[Any], usage: Usage | None) -> dict[str, Any]:
        """The outer object shared by full answers and chunks."""
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            "usage": usage_dict(usage),
        }

    def first(self) -> list[dict[str, Any]]:
        """Choices of the opening chunk (the role), if the format has one."""
        return [self._choice({"role": "assistant", "content": ""})]

    def calls(self, calls: tuple[ToolCall, ...], first: int | None = None) -> dict[str, Any]:
        """The message fields of tool calls, or a delta's (`first`: the index of its first)."""
        if first is None:
            return {"tool_calls": [call.openai() for call in calls]}
        return {"tool_calls": [{"index": first + i, **c.openai()} for i, c in enumerate(calls)]}

    def finish(self, reason: str | None, called: bool) -> str:
        """The finish reason: an answer with calls says so, unless max_tokens cut it (its last
        call may be cut short: OpenAI says "length" then)."""
        if called and reason != "length":
            return "tool_calls"
        return reason or "stop"

    def delta(self, chunk: Chunk, calls: int) -> list[dict[str, Any]]:
        """Choices of a content chunk."""
        delta: dict[str, Any] = {}
        if chunk.content:
            delta["content"] = chunk.content
        if chunk.thoughts:
            delta["reasoning_content"] = chunk.thoughts
        if chunk.tool_calls:
            delta.update(self.calls(chunk.tool_calls, calls))
        return [self._choice(delta)] if delta else []

    def last(self, finish: str) -> list[dict[str, Any]]:
        """Choices of the closing chunk."""
        return [self._choice({}, finish)]

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


class FunctionCallShape(ChatShape):
    """A request with the deprecated `functions`: its one call comes as `function_call`, the
    finish reason "function_call", as OpenAI answers such requests."""

    def calls(self, calls: tuple[ToolCall, ...], first: int | None = None) -> dict[str, Any]:
        """The first call as `function_call` (this API has one call; later ones are dropped)."""
        if first:
            return {}
        return {"function_call": {"name": calls[0].name, "arguments": calls[0].arguments_json}}

    def finish(self, reason: str | None, called: bool) -> str:
        """ "function_call" where the chat API says "tool_calls"."""
        finish = super().finish(reason, called)
        return "function_call" if finish == "tool_calls" else finish


class CompletionShape(ChatShape):
    """Builds text_completion objects and chunks (the legacy format)."""

    id_prefix = "cmpl-"
    chunk_object = "text_completion"

    def __init__(self, prepared: Prepared, prefix: str) -> None:
        super().__init__(prepared)
        self.prefix = prefix

    def first(self) -> list[dict[str, Any]]:
        """The echoed prompt, when asked for."""
        return [self._text(self.prefix)] if self.prefix else []

    def delta(self, chunk: Chunk, calls: int) -> list[dict[str, Any]]:
        """Text only; reasoning and tool calls have no place in this format."""
        return [self._text(chunk.content)] if chunk.content else []

    def last(self, finish: str) -> list[dict[str, Any]]:
        """Empty text with the finish reason."""
        return [self._text("", finish)]

    def _text(self, text: str, finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}


def _stream(
    request: web.Request,
    prepared: Prepared,
    shape_of: Callable[[Prepared], ChatShape],
    include_usage: bool,
) -> Awaitable[web.StreamResponse]:
    """SSE chunks naming the target that serves."""

    def writer_of(response: BurstResponse, served: Prepared) -> _ChunkWriter:
        return _ChunkWriter(response, shape_of(served), include_usage)

    return stream_answer(request, prepared, writer_of)


class _ChunkWriter:
    """Writes one response's chunks in order: opening, deltas, closing, usage, `[DONE]`."""

    def __init__(self, response: BurstResponse, shape: ChatShape, usage_on: bool) -> None:
        self.response = response
        self.shape = shape
        self.usage_on = usage_on
        # most chunks are text alone: their event is this template with the text dropped in
        self.text_event = EventTemplate(self._body(shape.delta(Chunk.text(SLOT), 0), None)).event

    def send(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> Awaitable[None]:
        """One chunk object; send_event's own awaitable, so no frame of this method stays
        between a chunk and its write."""
        return send_event(self.response, self._body(choices, usage))

    def _body(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
        """A chunk object, `usage` only present when the client asked for it."""
        body = self.shape.envelope(self.shape.chunk_object, choices, usage)
        if not self.usage_on:
            del body["usage"]
        return body

    async def run(self, first: Chunk | None, chunks: AsyncIterator[Chunk]) -> None:
        """Send every chunk of the stream, then the closing ones."""
        opening = self.shape.first()
        if opening:  # written with the first text, which is already here
            hold_event(self.response, self._body(opening, None))
        folded, chunk = Accumulator(), first
        while chunk is not None:  # read in place: no helper frame per chunk
            if chunk.type == "chunk":
                calls = len(folded.calls)  # the index of this chunk's first tool call
                folded.add(chunk)
                if chunk.content and not chunk.thoughts and not chunk.tool_calls:
                    await self.response.send(self.text_event(chunk.content))
                elif choices := self.shape.delta(chunk, calls):
                    await self.send(choices)
            if chunk is first:  # after the opening chunk: the first text must not wait
                await self.response.flush()
            chunk = await anext(chunks, None)
        await self.send(
            self.shape.last(self.shape.finish(folded.finish_reason, bool(folded.calls)))
        )
        if self.usage_on:
            await self.send([], folded.usage)
        await send_event(self.response, "[DONE]")

    async def error(self, exc: LollmsError) -> None:
        """An error after the stream started: an `error` object, then `[DONE]`."""
        try:
            await send_event(self.response, error_body("openai", for_current_caller(exc))[1])
            await send_event(self.response, "[DONE]")
        except ClientGone:
            pass


routes: list[web.AbstractRouteDef] = [
    *openai_models.routes,
    *text_routes,
    *openai_responses.routes,
    *openai_media.routes,
]
