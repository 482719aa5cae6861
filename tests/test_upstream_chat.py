"""OpenAI wire format over a real local server: bodies sent, streams and tool calls assembled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lollms_server import upstream_chat
from lollms_server.bindings import ChatMessage, GenerationRequest, InputItem
from lollms_server.errors import BackendUnavailable, InvalidRequest
from lollms_server.resilience import RetryPolicy
from lollms_server.upstream import Upstream

TOOL_STREAM = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
    {"choices": [{"index": 0, "delta": {"reasoning_content": "thinking "}}]},
    {"choices": [{"index": 0, "delta": {"content": "Let me "}}]},
    {"choices": [{"index": 0, "delta": {"content": "check."}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_", "arguments": ""},
                        }
                    ]
                },
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "function": {"name": "weather", "arguments": '{"city": '}}
                    ]
                },
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}},
]


class Recorder:
    """A server that records request bodies and answers from a script per path."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        prompt = json.dumps(body.get("messages") or body.get("prompt"))
        if not body.get("stream"):
            message = {"role": "assistant", "content": "whole answer"}
            if "tools" in body:
                message["tool_calls"] = [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]
            return web.json_response(
                {
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if "done-unfinished" in prompt:  # Ollama's /v1 once sent "" until [DONE]
            events: list[Any] = [
                {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": ""}]}
                for w in ("all ", "there")
            ]
        elif "no-finish" in prompt:
            events = [{"choices": [{"index": 0, "delta": {"content": "cut"}}]}]
        elif "error" in prompt:
            events = [
                {"choices": [{"index": 0, "delta": {"content": "a"}}]},
                {"error": {"code": 400, "message": "context too long"}},
            ]
        else:
            events = TOOL_STREAM
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if "no-finish" not in prompt:
            await response.write(b"data: [DONE]\n\n")
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        data = [
            {"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(body["input"])
        ]
        return web.json_response({"data": list(reversed(data))})


@pytest.fixture
async def served(aiohttp_server: Any) -> tuple[Recorder, Upstream]:
    """The recorder on a local port and an Upstream of it."""
    recorder = Recorder()
    server: TestServer = await aiohttp_server(recorder.app())
    upstream = Upstream("inst", str(server.make_url("")), retry=RetryPolicy(attempts=1))
    return recorder, upstream


def ask(text: str, **parameters: Any) -> GenerationRequest:
    """A chat request with one user message."""
    return GenerationRequest("ttt", "m", (ChatMessage("user", text),), parameters=parameters)


async def test_streamed_tool_calls_are_assembled(served: tuple[Recorder, Upstream]) -> None:
    """Fragments of a tool call become one whole call on the last chunk, with usage."""
    recorder, upstream = served
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    request = ask("weather?", tools=tools, tool_choice="auto", max_tokens=9, top_k=5, junk=1)
    chunks = [c async for c in upstream_chat.stream(upstream, request, "m", prefix="/v1")]
    await upstream.close()
    assert "".join(c.content for c in chunks) == "Let me check."
    assert "".join(c.thoughts for c in chunks) == "thinking "
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert last.usage is not None and (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        12,
        9,
    )
    assert tuple(call.openai() for call in last.tool_calls) == (
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
    )
    sent = recorder.bodies[0]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["max_tokens"] == 9
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "top_k" not in sent and "junk" not in sent  # only standard and allowed extras


async def test_request_body_carries_images_and_history(served: tuple[Recorder, Upstream]) -> None:
    """Image inputs become data-URL parts; assistant tool calls and tool results are kept."""
    recorder, upstream = served
    image = InputItem("image", "input_image", data=b"\x89PNG fake", mime_type="image/png")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    messages = (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "what is this?", images=(image,)),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "42", tool_call_id="c1"),
    )
    request = GenerationRequest("ttt", "m", messages, parameters={"top_k": 3})
    result = await upstream_chat.generate(
        upstream, request, "m", prefix="/v1", extra_keys=["top_k"]
    )
    await upstream.close()
    assert result.outputs[0].text == "whole answer" and result.usage is not None
    sent = recorder.bodies[0]
    assert sent["top_k"] == 3 and "stream" not in sent
    user = sent["messages"][1]
    assert user["content"][0] == {"type": "text", "text": "what is this?"}
    assert user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert sent["messages"][2]["content"] is None
    assert sent["messages"][3] == {"role": "tool", "content": "42", "tool_call_id": "c1"}


async def test_raw_prompt_uses_completions(served: tuple[Recorder, Upstream]) -> None:
    """A raw prompt goes to /completions as `prompt`, without chat-only fields."""
    recorder, upstream = served
    request = GenerationRequest(
        "ttt",
        "m",
        (ChatMessage("user", "Once upon"),),
        parameters={"n_predict": 4},
        raw_prompt=True,
    )
    await upstream_chat.generate(upstream, request, "m", prefix="/v1")
    await upstream.close()
    assert recorder.bodies[0] == {"model": "m", "prompt": "Once upon", "max_tokens": 4}


async def test_stream_without_finish_is_unavailable(served: tuple[Recorder, Upstream]) -> None:
    """A stream that ends with no finish reason and no [DONE] is a failure, not an answer."""
    _, upstream = served
    with pytest.raises(BackendUnavailable, match="before finishing"):
        async for _ in upstream_chat.stream(upstream, ask("no-finish"), "m", prefix="/v1"):
            pass
    await upstream.close()


async def test_stream_ended_by_done_without_finish_is_an_answer(
    served: tuple[Recorder, Upstream],
) -> None:
    """An upstream that never names a finish reason but ends its stream with [DONE] (Ollama's
    /v1 sent "", some proxies send none) finished: "stop". Before, the whole streamed answer
    ended in a 503 error event."""
    _, upstream = served
    request = ask("done-unfinished")
    chunks = [c async for c in upstream_chat.stream(upstream, request, "m", prefix="/v1")]
    await upstream.close()
    assert "".join(c.content for c in chunks) == "all there"
    assert chunks[-1].finish_reason == "stop"


async def test_error_event_mid_stream_is_mapped(served: tuple[Recorder, Upstream]) -> None:
    """An error object inside the stream raises our error with its status and message."""
    _, upstream = served
    with pytest.raises(InvalidRequest, match="context too long"):
        async for _ in upstream_chat.stream(upstream, ask("error"), "m", prefix="/v1"):
            pass
    await upstream.close()


async def test_embeddings_in_input_order(served: tuple[Recorder, Upstream]) -> None:
    """Vectors come back in input order even when the server shuffles them."""
    recorder, upstream = served
    vectors = await upstream_chat.embed(upstream, ["a", "bbb"], "m", prefix="/v1")
    await upstream.close()
    assert vectors == [[1.0, 1.0], [3.0, 1.0]]
    assert recorder.bodies[0]["encoding_format"] == "float"
