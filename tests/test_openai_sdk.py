"""The real `openai` Python SDK against the server: every /v1 endpoint a client would use."""

from __future__ import annotations

import base64
import math
import struct
import warnings
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

Client = TestClient[Any, Any]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_chat(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="echo/echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"},
        ],
        temperature=0.1,
        max_completion_tokens=100,
        seed=1,
        stop=["zzz"],
    )
    assert completion.object == "chat.completion" and completion.model == "echo/echo"
    assert completion.choices[0].message.content == "hello world"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 2)


async def test_chat_reasoning_content(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="echo/think", messages=[{"role": "user", "content": "why"}]
    )
    message = completion.choices[0].message
    assert message.content == "why"
    assert getattr(message, "reasoning_content", None) == "The user said: why"


async def test_chat_stream_with_usage(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="echo/echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_chat_stream_error_after_first_token_raises(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="echo/fail", messages=[{"role": "user", "content": "a b c"}], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="fails on purpose"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "a"


async def test_legacy_completion(sdk: AsyncOpenAI) -> None:
    completion = await sdk.completions.create(model="echo/echo", prompt="say this", max_tokens=1)
    assert completion.choices[0].text == "say"
    assert completion.choices[0].finish_reason == "length"
    stream = await sdk.completions.create(model="echo/echo", prompt="a b", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == "a b"


async def test_models(sdk: AsyncOpenAI) -> None:
    models = [model async for model in sdk.models.list()]
    assert {m.id for m in models} == {"echo/echo", "echo/think", "echo/slow", "echo/fail"}
    model = await sdk.models.retrieve("echo/think")
    assert model.id == "echo/think" and model.owned_by == "echo" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("echo/missing")


async def test_embeddings_default_base64_matches_float(sdk: AsyncOpenAI) -> None:
    default = await sdk.embeddings.create(model="echo/echo", input=["alpha", "beta"])
    floats = await sdk.embeddings.create(
        model="echo/echo", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.index for d in default.data] == [0, 1]
    for packed, plain in zip(default.data, floats.data, strict=True):
        assert len(packed.embedding) == 16
        assert all(
            math.isclose(a, b, rel_tol=1e-6)
            for a, b in zip(packed.embedding, plain.embedding, strict=True)
        )
    assert default.data[0].embedding != default.data[1].embedding


async def test_image_generation(sdk: AsyncOpenAI) -> None:
    result = await sdk.images.generate(
        model="echo/echo", prompt="a lighthouse", size="32x16", response_format="b64_json"
    )
    assert result.data is not None
    png = base64.b64decode(result.data[0].b64_json or "")
    assert png[:8] == PNG_MAGIC and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (32, 16)


async def test_image_edit(sdk: AsyncOpenAI) -> None:
    generated = await sdk.images.generate(model="echo/echo", prompt="a boat", size="8x8")
    assert generated.data is not None
    assert generated.data[0].url is None  # no response_format: b64_json (docs/compatibility.md)
    source = base64.b64decode(generated.data[0].b64_json or "")
    edited = await sdk.images.edit(
        model="echo/echo",
        image=("boat.png", source, "image/png"),
        mask=("mask.png", source, "image/png"),
        prompt="paint it red",
        size="16x8",
        n=2,
    )
    assert edited.data is not None and len(edited.data) == 2
    png = base64.b64decode(edited.data[1].b64_json or "")
    assert png[:8] == PNG_MAGIC and struct.unpack(">II", png[16:24]) == (16, 8)


async def test_speech_then_transcription_round_trip(sdk: AsyncOpenAI) -> None:
    speech = await sdk.audio.speech.create(
        model="echo/echo", voice="alloy", input="hello world", response_format="wav"
    )
    audio = speech.content
    assert audio[:4] == b"RIFF"
    transcript = await sdk.audio.transcriptions.create(
        model="echo/echo", file=("speech.wav", audio, "audio/wav")
    )
    assert transcript.text == "hello world"
    text = await sdk.audio.transcriptions.create(
        model="echo/echo",
        file=("speech.wav", audio, "audio/wav"),
        response_format="text",
        language="en",
        timestamp_granularities=["segment"],
    )
    assert str(text).strip() == "hello world"
    with warnings.catch_warnings():  # some SDK versions mark translations deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        translation = await sdk.audio.translations.create(
            model="echo/echo", file=("speech.wav", audio, "audio/wav")
        )
    assert translation.text == "hello world"


async def test_speech_unavailable_format_is_bad_request(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="wav"):
        await sdk.audio.speech.create(
            model="echo/echo", voice="alloy", input="x", response_format="mp3"
        )


async def test_errors(sdk: AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.NotFoundError) as not_found:
        await sdk.chat.completions.create(model="echo/missing", messages=messages)
    assert not_found.value.status_code == 404 and "missing" in not_found.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.chat.completions.create(model="echo/echo", messages=messages, n=3)
    assert bad.value.param == "n" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="bogus"):
        await sdk.chat.completions.create(
            model="echo/echo", messages=messages, extra_body={"bogus": True}
        )
    with pytest.raises(openai.BadRequestError, match="token-id"):
        await sdk.embeddings.create(model="echo/echo", input=[1, 2, 3])
    with pytest.raises(openai.APIStatusError) as unavailable:
        await sdk.chat.completions.create(model="echo/fail", messages=messages)
    assert unavailable.value.status_code == 503
    assert "echo" in unavailable.value.message
    with pytest.raises(openai.NotFoundError, match="personality"):
        await sdk.chat.completions.create(
            model="echo/echo", messages=messages, extra_body={"personality": "nobody"}
        )


async def test_tools_that_are_not_function_tools_are_a_400(sdk: AsyncOpenAI) -> None:
    """A `custom` tool (or one without a function name) is refused at the face, naming `tools`:
    llama.cpp answered it with a 500, a 502 that counted against the instance's circuit."""
    messages: Any = [{"role": "user", "content": "x"}]
    for tool in ({"type": "custom", "custom": {"name": "x"}}, {"type": "function"}):
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(model="echo/echo", messages=messages, tools=[tool])
        assert bad.value.param == "tools" and "tools.0" in bad.value.message
    function = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    reply = await sdk.chat.completions.create(
        model="echo/echo", messages=messages, tools=[function]
    )
    assert reply.choices[0].message.content == "x"


async def test_a_malformed_response_format_is_a_400(sdk: AsyncOpenAI) -> None:
    """A caller who asks for JSON in a shape the API does not have is told so, not answered in
    free text (the binding got the malformed format and ignored it: a 200 of prose)."""
    messages: Any = [{"role": "user", "content": "x"}]
    malformed: list[Any] = [
        {},
        {"type": 5},
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": "x"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": "abc"}},
    ]
    for shape in malformed:
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(
                model="echo/echo", messages=messages, response_format=shape
            )
        assert bad.value.param == "response_format", shape
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for shape in (
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
    ):
        reply = await sdk.chat.completions.create(
            model="echo/echo", messages=messages, response_format=shape
        )
        assert reply.choices[0].message.content == "x"


async def test_a_tool_choice_without_tools_or_of_no_known_kind_is_a_400(sdk: AsyncOpenAI) -> None:
    """`required` (or a named function) with no tools was dropped and the caller who required a
    call got text; a choice such as `5` reached the binding as it was."""
    messages: Any = [{"role": "user", "content": "x"}]
    named = {"type": "function", "function": {"name": "f"}}
    for choice in ("required", named):
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(
                model="echo/echo", messages=messages, tool_choice=choice
            )
        assert bad.value.param == "tool_choice" and "no tools" in bad.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.responses.create(model="echo/echo", input="x", tool_choice="required")
        assert bad.value.param == "tool_choice"
    tools: Any = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for odd in (5, "sometimes"):
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(
                model="echo/echo", messages=messages, tools=tools, extra_body={"tool_choice": odd}
            )
        assert bad.value.param == "tool_choice"
    for fine in ("auto", "none"):
        reply = await sdk.chat.completions.create(
            model="echo/echo", messages=messages, tool_choice=fine
        )
        assert reply.choices[0].message.content == "x"


async def test_a_tool_choice_naming_a_function_not_among_the_tools_is_a_400(
    sdk: AsyncOpenAI,
) -> None:
    """Only lollms-llamacpp checked the name: other bindings (echo here, the ollama binding)
    answered without calling anything, the caller's forced call silently not made."""
    messages: Any = [{"role": "user", "content": "x"}]
    tools: Any = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for odd in ({"type": "function", "function": {"name": "nope"}}, {"type": "custom"}):
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(
                model="echo/echo", messages=messages, tools=tools, extra_body={"tool_choice": odd}
            )
        assert bad.value.param == "tool_choice"
    flat: Any = [{"type": "function", "name": "f", "parameters": {}}]
    with pytest.raises(openai.BadRequestError, match="'nope'"):
        await sdk.responses.create(
            model="echo/echo",
            input="x",
            tools=flat,
            tool_choice={"type": "function", "name": "nope"},
        )
    named: Any = {"type": "function", "function": {"name": "f"}}
    reply = await sdk.chat.completions.create(
        model="echo/echo", messages=messages, tools=tools, tool_choice=named
    )
    assert reply.choices[0].message.content == "x"


async def test_deprecated_functions_are_answered_with_function_call(sdk: AsyncOpenAI) -> None:
    """A request with the deprecated `functions` gets its call as `message.function_call` and
    `finish_reason: "function_call"`, as OpenAI answers it (whole and streamed). Before, the call
    came as `tool_calls`, which clients of that API never read: the call was lost."""
    arguments: Any = {
        "model": "echo/echo",
        "messages": [{"role": "user", "content": 'CALL get_weather {"city": "Paris"}'}],
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    }
    answer = await sdk.chat.completions.create(**arguments)
    choice = answer.choices[0]
    assert choice.finish_reason == "function_call" and not choice.message.tool_calls
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"
    assert choice.message.function_call.arguments == '{"city": "Paris"}'
    chunks = [c async for c in await sdk.chat.completions.create(**arguments, stream=True)]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.tool_calls for d in deltas)
    name = "".join(d.function_call.name or "" for d in deltas if d.function_call)
    called = "".join(d.function_call.arguments or "" for d in deltas if d.function_call)
    assert (name, called) == ("get_weather", '{"city": "Paris"}')
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "function_call"
