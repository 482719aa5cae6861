"""OpenAI wire format over an `Upstream`: chat and legacy completions, embeddings.

Shared by every binding that talks to an OpenAI-compatible server: it builds request bodies from
`GenerationRequest`s and turns answers (whole or streamed) into `Result`s and `Chunk`s. Streamed
tool-call fragments are assembled and handed on as whole calls with the last chunk.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from typing import Any

from .bindings import ChatMessage, Chunk, GenerationRequest, InputItem, Output, Result, Usage
from .chunks import tool_calls
from .errors import BackendError, BackendUnavailable
from .upstream import DONE, Upstream

#: Request parameters every OpenAI-compatible server understands.
STANDARD_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
)
FINISH_REASONS = {"function_call": "tool_calls", "eos": "stop", "stop_sequence": "stop"}


def request_parameters(
    parameters: Mapping[str, Any], extra_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """The parameters to send: the standard ones plus `extra_keys`; others are dropped."""
    wanted = (*STANDARD_PARAMETERS, *extra_keys)
    sent = {key: parameters[key] for key in wanted if parameters.get(key) is not None}
    if "max_tokens" not in sent and isinstance(parameters.get("n_predict"), int):
        sent["max_tokens"] = parameters["n_predict"]  # the upstream lollms name
    if isinstance(parameters.get("response_format"), Mapping):
        sent["response_format"] = dict(parameters["response_format"])  # chat json modes
    return sent


def data_url(item: InputItem) -> str:
    """An image input as a `data:` URL."""
    mime = item.mime_type or "image/png"
    return f"data:{mime};base64,{base64.b64encode(item.data).decode('ascii')}"


def message_dict(message: ChatMessage) -> dict[str, Any]:
    """One chat message in OpenAI's shape (image parts as data URLs)."""
    content: Any = message.content
    if message.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
        for image in message.images:
            url: dict[str, Any] = {"url": data_url(image)}
            if image.metadata.get("detail"):
                url["detail"] = image.metadata["detail"]
            parts.append({"type": "image_url", "image_url": url})
        content = parts
    body: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        body["tool_calls"] = [call.openai() for call in message.tool_calls]
        body["content"] = content or None
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    return body


def chat_body(
    request: GenerationRequest,
    model: str,
    *,
    stream: bool,
    extra_keys: Iterable[str] = (),
    stream_usage: bool = True,
    renames: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body of `/chat/completions` (or `/completions` for a raw prompt).

    `stream_usage`: ask for usage in streams (`stream_options`; a server that rejects the
    field, Mistral's, sends usage anyway); `renames`: parameters under the server's own names
    (e.g. Mistral's `random_seed` for `seed`)."""
    body: dict[str, Any] = {"model": model}
    if request.raw_prompt:
        body["prompt"] = request.messages[-1].content if request.messages else ""
    else:
        body["messages"] = [message_dict(m) for m in request.messages]
    body.update(request_parameters(request.parameters, extra_keys))
    if request.raw_prompt:
        for key in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
            body.pop(key, None)
    for name, wire_name in (renames or {}).items():
        if name in body and name not in ("model", "messages", "prompt"):
            body[wire_name] = body.pop(name)
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def _path(request: GenerationRequest, prefix: str) -> str:
    return f"{prefix}/completions" if request.raw_prompt else f"{prefix}/chat/completions"


async def generate(
    upstream: Upstream,
    request: GenerationRequest,
    model: str,
    *,
    prefix: str = "",
    extra_keys: Iterable[str] = (),
    renames: Mapping[str, str] | None = None,
) -> Result:
    """A whole (non-streamed) completion as a Result."""
    body = chat_body(request, model, stream=False, extra_keys=extra_keys, renames=renames)
    answer = await upstream.post_json(_path(request, prefix), body)
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise BackendError(f"{upstream.label} answered without choices", binding=upstream.instance)
    choice = choices[0]
    message = choice.get("message") or {}
    text = message.get("content") or choice.get("text") or ""
    thoughts = message.get("reasoning_content") or message.get("reasoning") or None
    calls = tool_calls(c for c in message.get("tool_calls") or () if isinstance(c, dict))
    finish = _finish(choice.get("finish_reason")) or ("tool_calls" if calls else "stop")
    output = Output(type="text", text=text, thoughts=thoughts)
    return Result((output,), usage_of(answer), finish, calls)


async def stream(
    upstream: Upstream,
    request: GenerationRequest,
    model: str,
    *,
    prefix: str = "",
    extra_keys: Iterable[str] = (),
    stream_usage: bool = True,
    renames: Mapping[str, str] | None = None,
    check: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[Chunk, None]:
    """The completion as Chunks; the last one carries finish reason, usage and tool calls.

    `check`: awaited first, when the stream is first read (a binding's model check), so that a
    binding can hand this generator on as its own stream instead of relaying its chunks."""
    if check is not None:
        await check()
    body = chat_body(
        request,
        model,
        stream=True,
        extra_keys=extra_keys,
        stream_usage=stream_usage,
        renames=renames,
    )
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: Usage | None = None
    done = False  # the upstream said `[DONE]`
    path = _path(request, prefix)
    async with aclosing(upstream.stream_events(path, body, mark_done=True)) as events:
        async for event in events:
            if event is DONE:
                done = True
                continue
            if "usage" in event:  # most events have none: skip the call
                usage = usage_of(event) or usage
            for choice in event.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or choice.get("message") or {}
                text = delta.get("content") or choice.get("text") or ""
                thoughts = delta.get("reasoning_content") or delta.get("reasoning") or ""
                for fragment in delta.get("tool_calls") or ():
                    _merge_call(calls, fragment)
                if reason := choice.get("finish_reason"):
                    finish = _finish(reason) or finish
                if text or thoughts:
                    yield Chunk.text(text, thoughts)
    if finish is None and not done:
        raise BackendUnavailable(
            f"{upstream.label} ended the stream before finishing", binding=upstream.instance
        )
    finish = finish or ("tool_calls" if calls else "stop")  # [DONE] without a finish reason
    whole = tool_calls(calls[i] for i in sorted(calls))
    yield Chunk(finish_reason=finish, usage=usage, tool_calls=whole)


async def embed(
    upstream: Upstream, texts: list[str], model: str, *, prefix: str = ""
) -> list[list[float]]:
    """Embedding vectors of `texts`, in input order."""
    body = {"model": model, "input": texts, "encoding_format": "float"}
    answer = await upstream.post_json(f"{prefix}/embeddings", body)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != len(texts):
        count = len(data) if isinstance(data, list) else 0
        raise BackendError(
            f"{upstream.label} returned {count} embeddings for {len(texts)} texts",
            binding=upstream.instance,
        )
    ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
    return [[float(x) for x in item["embedding"]] for item in ordered]


def usage_of(answer: Any) -> Usage | None:
    """The `usage` of an answer or chunk, if it has one."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _finish(reason: Any) -> str | None:
    if not isinstance(reason, str) or not reason:
        return None
    return FINISH_REASONS.get(reason, reason)


def _merge_call(calls: dict[int, dict[str, Any]], fragment: Any) -> None:
    """Add one streamed tool-call fragment (OpenAI sends names and arguments in pieces)."""
    if not isinstance(fragment, dict):
        return
    index = int(fragment.get("index", len(calls)))
    call = calls.setdefault(index, {"id": "", "type": "function", "function": {}})
    if fragment.get("id"):
        call["id"] = fragment["id"]
    function = fragment.get("function") or {}
    target = call["function"]
    if function.get("name"):
        target["name"] = target.get("name", "") + function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        target["arguments"] = target.get("arguments", "") + arguments
    elif arguments is not None:
        target["arguments"] = json.dumps(arguments)
