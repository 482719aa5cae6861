"""The one stream pipeline: a non-streaming binding's result reaches a whole request as it
is (never split into chunks and folded back), a streaming face gets it as chunks in one place,
and a binding stream's time limits are kept without cancelling the consumer's own work."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import MakeClient, MakeConfig

from lollms_server.bindings import (
    Binding,
    Chunk,
    GenerationRequest,
    ModelInfo,
    Output,
    Result,
    ToolCall,
    Usage,
    result_chunks,
)
from lollms_server.errors import BackendError, BackendTimeout
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins
from lollms_server.service.binding_read import BindingReader

Client = TestClient[Any, Any]
ANSWER = Output("text", text="the whole answer", metadata={"made": "whole"})
FUNCTIONS = '''
from lollms_server.service.functions import function


@function
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
'''


class WholeBinding(Binding):
    """Answers whole only (no `stream` capability); asks for `add` once when tools are offered."""

    name = "whole"
    capabilities = frozenset({"ttt", "tools"})
    calls: list[str] = []

    async def list_models(self) -> list[ModelInfo]:
        """One model."""
        return [ModelInfo("m")]

    async def generate(self, request: GenerationRequest) -> Result:
        """The answer (with its metadata), or a call of `add` before any tool result."""
        WholeBinding.calls.append("generate")
        tools_offered = bool(request.parameters.get("tools"))
        if tools_offered and not any(m.role == "tool" for m in request.messages):
            call = ToolCall("c1", "add", {"a": 2, "b": 3})
            return Result((Output("text"),), Usage(4, 1), "tool_calls", (call,))
        return Result((ANSWER,), Usage(4, 3))

    def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Recorded, then refused like the base class (this binding does not stream)."""
        WholeBinding.calls.append("stream")
        return super().stream(request)


@pytest.fixture
async def whole(
    make_client: MakeClient, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[Client, list[int]]:
    """A server whose default text binding answers whole, and a count of result splits."""
    config = make_config(
        {
            "bindings": {"whole": {"type": "whole", "default_model": "m"}},
            "defaults": {"ttt": "whole"},
        }
    )
    (config.functions_dir / "adding.py").write_text(FUNCTIONS)
    plugin = types.SimpleNamespace(register_bindings=hookimpl(lambda: [WholeBinding]))
    splits: list[int] = []

    def counted(result: Result) -> list[Chunk]:
        splits.append(1)
        return result_chunks(result)

    monkeypatch.setattr("lollms_server.service.generation.result_chunks", counted)
    WholeBinding.calls = []
    client = await make_client(config, plugins=load_plugins(extra={"whole_test": plugin}))
    return client, splits


def lollms(**more: Any) -> dict[str, Any]:
    return {"input_data": [{"type": "text", "data": "hi"}], **more}


async def test_whole_requests_get_the_bindings_result_as_it_is(
    whole: tuple[Client, list[int]],
) -> None:
    client, splits = whole
    body = await (await client.post("/api/v1/generate", json=lollms())).json()
    assert body["output"][0]["data"] == ANSWER.text
    assert body["output"][0]["metadata"] == {"made": "whole"}  # a fold would drop it
    assert body["usage"]["completion_tokens"] == 3
    chat = {"model": "whole/m", "messages": [{"role": "user", "content": "hi"}]}
    openai = await (await client.post("/v1/chat/completions", json=chat)).json()
    assert openai["choices"][0]["message"]["content"] == ANSWER.text
    ollama = await (await client.post("/api/chat", json={**chat, "stream": False})).json()
    assert ollama["message"]["content"] == ANSWER.text
    assert WholeBinding.calls == ["generate"] * 3
    assert splits == []  # no chunk was made of any of these results


async def test_a_whole_tool_loop_takes_each_step_whole(whole: tuple[Client, list[int]]) -> None:
    client, splits = whole
    response = await client.post("/api/v1/generate", json=lollms(functions=["add"]))
    body = await response.json()
    assert response.status == 200, body
    first, second = body["steps"]
    (call,) = first["function_calls"]
    assert (call["name"], call["result"]) == ("add", "5")
    assert second["text"] == ANSWER.text
    assert body["output"][0]["metadata"] == {"made": "whole"}  # the last result, as it was
    assert body["usage"]["completion_tokens"] == 4  # both steps
    assert body["binding_instance"] == "whole" and body["finish_reason"] == "stop"
    assert WholeBinding.calls == ["generate", "generate"]
    assert splits == []


async def test_a_streaming_face_gets_a_whole_result_as_chunks(
    whole: tuple[Client, list[int]],
) -> None:
    client, splits = whole
    response = await client.post("/api/v1/generate", json=lollms(stream=True))
    events = [json.loads(x[6:]) for x in (await response.text()).splitlines() if x[:6] == "data: "]
    chunks = [e["content"] for e in events if e["type"] == "chunk"]
    assert chunks == [ANSWER.text] and events[-1]["type"] == "final"
    assert events[-1]["metadata"]["usage"]["completion_tokens"] == 3
    assert WholeBinding.calls == ["generate"]  # never its `stream`
    assert splits == [1]  # the one conversion, made once


async def test_a_scripts_result_reaches_a_whole_request_as_it_is(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    thought = Output("text", text="the answer", thoughts="mulled", metadata={"made": "script"})

    async def resulting(prompt: str, params: dict[str, Any], context: Any) -> Result:
        context.send_info("working")  # progress only: the answer is the Result
        return Result((thought,), Usage(2, 5), "length")

    async def odd(prompt: str, params: dict[str, Any], context: Any) -> int:
        return 42

    scripts = [
        {"name": "resulting", "run_workflow": resulting},
        {"name": "odd", "run_workflow": odd},
    ]
    plugin = types.SimpleNamespace(register_personalities=hookimpl(lambda: scripts))
    client = await make_client(make_config(), plugins=load_plugins(extra={"scripts": plugin}))
    body = await (
        await client.post("/api/v1/generate", json=lollms(personality="resulting"))
    ).json()
    (output,) = body["output"]
    assert (output["data"], output["thoughts"], output["metadata"]) == (
        "the answer",
        "mulled",
        {"made": "script"},
    )
    assert body["usage"]["completion_tokens"] == 5 and body["finish_reason"] == "length"
    for stream in (False, True):
        response = await client.post(
            "/api/v1/generate", json=lollms(personality="odd", stream=stream)
        )
        error = (await response.json())["error"]
        assert response.status == 502 and error["type"] == "workflow_error"
        assert "returned int" in error["message"]


class Paced(Binding):
    """Streams `a`, then `b` after `pause_s` (the first after `first_s`); or fails."""

    name = "paced"
    capabilities = frozenset({"ttt", "stream"})

    def __init__(self, first_s: float = 0.0, pause_s: float = 0.0, fail: bool = False) -> None:
        super().__init__("paced", {})
        self.first_s, self.pause_s, self.fail = first_s, pause_s, fail
        self.closed = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Two chunks, paced."""
        try:
            await asyncio.sleep(self.first_s)
            yield Chunk(content="a")
            if self.fail:
                raise RuntimeError("the backend broke")
            await asyncio.sleep(self.pause_s)
            yield Chunk(content="b")
        finally:
            self.closed = True


def reader(binding: Paced, timeout_s: float = 30.0, first_s: float = 0.0) -> BindingReader:
    return BindingReader(binding, GenerationRequest("ttt", "m"), timeout_s, first_s)


async def test_the_first_token_limit_ends_a_silent_binding() -> None:
    binding = Paced(first_s=30)
    async with reader(binding, first_s=0.05) as chunks:
        with pytest.raises(BackendTimeout, match=r"no first token from paced/m within 0\.05s"):
            await chunks.read()
    assert binding.closed


async def test_the_request_limit_ends_a_stalled_stream_after_its_first_token() -> None:
    binding = Paced(pause_s=30)
    async with reader(binding, timeout_s=0.4, first_s=0.2) as chunks:
        first = await chunks.read()
        assert first is not None and first.content == "a"
        chunks.first_token()  # now only the request's limit
        with pytest.raises(BackendTimeout, match=r"did not answer within 0\.4s"):
            await chunks.read()
    assert binding.closed


async def test_a_limit_passing_while_the_consumer_works_never_cancels_that_work() -> None:
    async with reader(Paced(), timeout_s=0.3) as chunks:
        assert await chunks.read() is not None
        await asyncio.sleep(0.5)  # the consumer's own await, past the limit: not cancelled
        with pytest.raises(BackendTimeout):
            await chunks.read()  # the next read reports the limit


async def test_after_the_first_token_only_the_request_limit_applies() -> None:
    binding = Paced(pause_s=0.4)  # the second chunk comes after the first-token limit
    async with reader(binding, timeout_s=5, first_s=0.2) as chunks:
        first = await chunks.read()
        chunks.first_token()
        got = [first, await chunks.read(), await chunks.read()]
    assert [c.content if c else None for c in got] == ["a", "b", None]
    assert binding.closed
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_client_leaving_stays_a_cancel_and_a_binding_failure_a_502() -> None:
    binding = Paced(first_s=30)
    read = asyncio.ensure_future(reader(binding, timeout_s=5).read())
    await asyncio.sleep(0.01)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    async with reader(Paced(fail=True)) as chunks:
        await chunks.read()
        with pytest.raises(BackendError, match="binding 'paced' failed: RuntimeError"):
            await chunks.read()
