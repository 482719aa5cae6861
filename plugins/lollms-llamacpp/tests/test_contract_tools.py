"""Real tool calls from SmolLM2 (whose own template has no tools) with the shipped chatml-tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from lollms_llamacpp import LlamaCppBinding
from openai import AsyncOpenAI

from lollms_server.bindings import ChatMessage, Chunk, GenerationRequest, Output, Result
from lollms_server.testing import serve_binding, started_binding, within
from lollms_server.testing.server import Client

from .conftest import SMOL, TINY_EMBED

TIMEOUT = 60.0
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": WEATHER_SCHEMA,
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
#: tool_choice cases: (tools offered, tool_choice, more parameters)
CHOICES: dict[str, tuple[list[Any], Any, dict[str, Any]]] = {
    "required": ([WEATHER], "required", {"parallel_tool_calls": False}),
    "named": ([ADD, WEATHER], NAMED, {}),
}
QUESTION = "What is the weather in Paris?"
GREEDY = {"temperature": 0.0, "seed": 42}


def settings(models_dir: Path) -> dict[str, Any]:
    """SmolLM2 with the shipped tool-capable ChatML template."""
    return {
        "models_folders": [str(models_dir)],
        "embedding_models": [TINY_EMBED],
        "chat_templates": {SMOL: "chatml-tools"},
        "n_ctx": 2048,
        "n_parallel": 1,
        "n_threads": 2,
    }


@pytest_asyncio.fixture
async def binding(request: pytest.FixtureRequest, models_dir: Path) -> AsyncIterator[Any]:
    """A started llamacpp instance serving SmolLM2 with chatml-tools."""
    async with started_binding(
        LlamaCppBinding, "local", settings(models_dir), request=request
    ) as started:
        yield started


def chat(messages: tuple[ChatMessage, ...], **parameters: Any) -> GenerationRequest:
    """A chat request to SmolLM2."""
    return GenerationRequest("ttt", SMOL, messages, parameters={**GREEDY, **parameters})


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    """Every chunk of a stream."""
    return [chunk async for chunk in chunks]


async def run(binding: LlamaCppBinding, request: GenerationRequest, stream: bool) -> Result:
    """The answer through generate(), or stream() joined (tool calls from the last chunk)."""
    if not stream:
        return await within(TIMEOUT, binding.generate(request), "generate")
    chunks = await within(TIMEOUT, collect(binding.stream(request)), "stream")
    last = chunks[-1]
    assert last.finish_reason is not None
    assert all(not chunk.tool_calls for chunk in chunks[:-1])
    text = "".join(chunk.content for chunk in chunks)
    return Result((Output("text", text),), last.usage, last.finish_reason, last.tool_calls)


def assert_weather_call(call: Mapping[str, Any]) -> None:
    """A get_weather call whose JSON arguments are valid against its schema."""
    function = call["function"]
    assert function["name"] == "get_weather"
    arguments = json.loads(function["arguments"])
    jsonschema.validate(arguments, WEATHER_SCHEMA)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", sorted(CHOICES))
async def test_required_call(binding: LlamaCppBinding, case: str, stream: bool) -> None:
    """tool_choice "required" or a named function: a schema-valid call and no prose."""
    tools, choice, more = CHOICES[case]
    request = chat(
        (ChatMessage("user", QUESTION),), tools=tools, tool_choice=choice, max_tokens=64, **more
    )
    result = await run(binding, request, stream)
    assert result.finish_reason == "tool_calls", result
    assert result.tool_calls, result
    assert_weather_call(result.tool_calls[0].openai())
    assert not result.outputs[0].text.strip()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_answers_after_the_tool_result(binding: LlamaCppBinding, stream: bool) -> None:
    """With the call and its result fed back, the model answers in text."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
    }
    messages = (
        ChatMessage("user", QUESTION),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "Sunny, 21 degrees celsius.", tool_call_id="call_1"),
    )
    request = chat(messages, tools=[WEATHER], tool_choice="auto", max_tokens=48)
    result = await run(binding, request, stream)
    assert result.finish_reason in ("stop", "length"), result
    assert result.outputs[0].text.strip() and not result.tool_calls


@pytest_asyncio.fixture
async def client(models_dir: Path, tmp_path: Path) -> AsyncIterator[Client]:
    """The app serving the instance as `local`."""
    async with serve_binding(
        LlamaCppBinding, "local", settings(models_dir), tmp_path / "data", default_model=SMOL
    ) as served:
        yield served


async def test_openai_sdk_gets_the_named_call(client: Client) -> None:
    """The openai SDK, through lollms-server's /v1: a named tool call, whole and streamed."""
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    arguments: Any = {
        "model": f"local/{SMOL}",
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [ADD, WEATHER],
        "tool_choice": NAMED,
        "max_tokens": 64,
        **GREEDY,
    }
    answer = await within(TIMEOUT, sdk.chat.completions.create(**arguments), "chat")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert_weather_call(choice.message.tool_calls[0].model_dump())
    names: dict[int, str] = {}
    pieces: dict[int, list[str]] = {}
    finish = None
    async for chunk in await sdk.chat.completions.create(**arguments, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.function and delta.function.name:
                names[delta.index] = delta.function.name
            if delta.function and delta.function.arguments:
                pieces.setdefault(delta.index, []).append(delta.function.arguments)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    streamed = {"function": {"name": names[0], "arguments": "".join(pieces[0])}}
    assert_weather_call(streamed)
    await sdk.close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_call_cut_by_max_tokens_finishes_with_length(client: Client, stream: bool) -> None:
    """A call whose arguments max_tokens cut short finishes with "length", as OpenAI answers
    (llama.cpp says so too): "tool_calls" made clients parse the broken arguments as a call."""
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    arguments: Any = {
        "model": f"local/{SMOL}",
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 20,  # the call's name and the start of its arguments
        **GREEDY,
    }
    if not stream:
        answer = await within(TIMEOUT, sdk.chat.completions.create(**arguments), "chat")
        assert answer.choices[0].message.tool_calls, answer  # the part of the call there is
        assert answer.choices[0].finish_reason == "length", answer
    else:
        chunks = await within(
            TIMEOUT, sdk.chat.completions.create(**arguments, stream=True), "chat"
        )
        seen = [chunk.choices[0] async for chunk in chunks if chunk.choices]
        assert any(choice.delta.tool_calls for choice in seen), seen
        assert [c.finish_reason for c in seen if c.finish_reason] == ["length"], seen
    await sdk.close()


async def test_a_forced_call_with_a_text_format_is_served(client: Client) -> None:
    """instructor's RESPONSES_TOOLS mode sends `text.format` (json_schema) and a named tool:
    llama.cpp cannot hold both grammars ("Failed to initialize samplers", a 400), and a forced
    call makes no text to format, so the format gives way to the call."""
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    schema = WEATHER["function"]["parameters"]
    text = {"format": {"type": "json_schema", "name": "W", "schema": schema, "strict": True}}
    tool = {"type": "function", **WEATHER["function"]}
    answer = await within(
        TIMEOUT,
        sdk.responses.create(
            model=f"local/{SMOL}",
            input=QUESTION,
            tools=[tool],  # type: ignore[list-item]
            tool_choice={"type": "function", "name": "get_weather"},
            text=text,  # type: ignore[arg-type]
            max_output_tokens=64,
            temperature=0,
        ),
        "responses",
    )
    calls = [item for item in answer.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    await sdk.close()


FUNCTIONS_FILE = '''
from lollms_server.service.functions import function

CALLS = []


@function()
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    CALLS.append(city)
    return f"Sunny, 21 degrees {unit}."
'''


@pytest_asyncio.fixture
async def loop_client(models_dir: Path, tmp_path: Path) -> AsyncIterator[Client]:
    """The app serving the instance, with a `get_weather` function in its functions folder."""
    data_dir = tmp_path / "data"
    (data_dir / "functions").mkdir(parents=True)
    (data_dir / "functions" / "weather.py").write_text(FUNCTIONS_FILE)
    async with serve_binding(
        LlamaCppBinding, "local", settings(models_dir), data_dir, default_model=SMOL
    ) as served:
        yield served


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_server_function_loop_with_smollm2(loop_client: Client, stream: bool) -> None:
    """The lollms face's loop: SmolLM2 asks, the server runs get_weather, feeds the result
    back, and SmolLM2's text answer ends the loop."""
    body = {
        "functions": ["get_weather"],
        "input_data": [{"type": "text", "data": QUESTION}],
        "parameters": {
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "max_tokens": 48,
            **GREEDY,
        },
        "stream": stream,
    }
    response = await within(TIMEOUT * 2, loop_client.post("/api/v1/generate", json=body), "loop")
    assert response.status == 200, await response.text()
    if stream:
        text = await response.text()
        events = [json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: ")]
        assert [e["type"] for e in events].count("function_call") >= 1
        assert events[-1]["type"] == "final", events[-1]
        answer = events[-1]["metadata"]
    else:
        answer = await response.json()
    first = answer["steps"][0]
    call = first["function_calls"][0]
    assert call["name"] == "get_weather" and call["error"] is None, call
    jsonschema.validate(json.loads(call["arguments"]), {**WEATHER_SCHEMA, "required": ["city"]})
    assert call["result"].startswith("Sunny, 21 degrees")
    assert len(answer["steps"]) >= 2
    final = answer["output"][0]["data"]
    # the result reached the model: greedy SmolLM2 quotes the tool response it was fed
    assert "21 degrees" in final, answer["steps"]
    assert answer["finish_reason"] in ("stop", "length", "max_steps")


HINT = f'chat_templates = {{ "{SMOL}" = "chatml-tools" }}'


@pytest_asyncio.fixture
async def own_template_client(models_dir: Path, tmp_path: Path) -> AsyncIterator[Client]:
    """The app serving SmolLM2 with its own GGUF template (which has no tools), as the README's
    minimal setup does."""
    plain = {key: value for key, value in settings(models_dir).items() if key != "chat_templates"}
    async with serve_binding(
        LlamaCppBinding, "local", plain, tmp_path / "data", default_model=SMOL
    ) as served:
        yield served


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_tools_refused_when_the_template_drops_them(
    own_template_client: Client, stream: bool
) -> None:
    """SmolLM2's own template cannot render tools: a 501 saying how to fix it, not prose
    (llama.cpp would drop the tools silently); the same model still chats without tools."""
    base = {"model": f"local/{SMOL}", "messages": [{"role": "user", "content": QUESTION}]}
    body = {**base, "max_tokens": 8, "stream": stream, **GREEDY}
    plain = await within(TIMEOUT, own_template_client.post("/v1/chat/completions", json=body), "")
    assert plain.status == 200, await plain.text()
    await plain.read()
    for choice in ("required", "auto", NAMED):
        asked = {**body, "tools": [WEATHER], "tool_choice": choice}
        response = await within(
            TIMEOUT, own_template_client.post("/v1/chat/completions", json=asked), "tools"
        )
        assert response.status == 501, await response.text()
        error = (await response.json())["error"]
        assert error["code"] == "not_supported" and error["param"] == "tools"
        assert "'local'" in error["message"] and HINT in error["message"], error
    ollama = {"model": f"local/{SMOL}", "messages": base["messages"], "tools": [WEATHER]}
    response = await within(TIMEOUT, own_template_client.post("/api/chat", json=ollama), "ollama")
    assert response.status == 501 and HINT in (await response.json())["error"]


WEATHER_FUNCTION = '''
from lollms_server.service.functions import function

@function
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    return f"Sunny, 21 degrees {unit} in {city}."
'''


@pytest.mark.parametrize("stream", [False, True])
async def test_the_loop_goes_on_after_a_call_cut_short(
    models_dir: Path, tmp_path: Path, stream: bool
) -> None:
    """A call whose arguments max_tokens cut short is refused to the model and the loop asks
    again; llama.cpp, which parses the arguments of the calls in the history it gets, must
    not see the broken text (it answered 500, and the whole request failed)."""
    (tmp_path / "data" / "functions").mkdir(parents=True)
    (tmp_path / "data" / "functions" / "weather.py").write_text(WEATHER_FUNCTION)
    async with serve_binding(
        LlamaCppBinding, "local", settings(models_dir), tmp_path / "data", default_model=SMOL
    ) as client:
        body = {
            "input_data": [{"type": "text", "data": QUESTION}],
            "functions": ["get_weather"],
            "stream": stream,
            "parameters": {**GREEDY, "max_tokens": 16, "tool_choice": "required", "max_steps": 2},
        }
        response = await within(TIMEOUT, client.post("/api/v1/generate", json=body), "generate")
        text = await response.text()
        assert response.status == 200, text
        if stream:
            events = [json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: ")]
            assert not [e for e in events if e["type"] == "error"], text
            answer = events[-1]["metadata"]
        else:
            answer = json.loads(text)
        first = answer["steps"][0]["function_calls"][0]
        assert first["name"] == "get_weather" and "not valid JSON" in first["error"], answer
        assert len(answer["steps"]) == 2, answer  # the model was asked again
