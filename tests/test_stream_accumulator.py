"""The one accumulator that folds a chunk stream into a result, and the one ToolCall type."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from lollms_server.chunks import (
    Accumulator,
    Chunk,
    Output,
    Result,
    ToolCall,
    Usage,
    join_stream,
    result_chunks,
)

IMAGE = Output("image", data=b"\x89PNG", mime_type="image/png")


def test_text_thoughts_usage_and_finish_are_folded() -> None:
    folded = Accumulator()
    folded.add(Chunk(content="Hel", thoughts="hmm "))
    folded.add(Chunk(type="info", content="queued at position 1"))
    folded.add(Chunk(content="lo", thoughts="ok", usage=Usage(3, 2), finish_reason="length"))
    assert (folded.text, folded.thoughts) == ("Hello", "hmm ok")
    result = folded.result()
    assert result.outputs == (Output("text", text="Hello", thoughts="hmm ok"),)
    assert result.usage == Usage(3, 2) and result.finish_reason == "length"


def test_media_only_stream_has_no_empty_text_output() -> None:
    folded = Accumulator()
    folded.add(Chunk(output=IMAGE))
    assert folded.result().outputs == (IMAGE,)
    assert Accumulator().result().outputs == (Output("text"),)  # nothing at all: empty text
    assert Accumulator().result().finish_reason == "stop"


def test_tool_calls_of_every_shape_become_tool_calls() -> None:
    openai_shape = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    flat = {"name": "g", "arguments": {"x": 1}}
    folded = Accumulator()
    folded.add(Chunk(tool_calls=(openai_shape,), finish_reason="tool_calls"))  # type: ignore[arg-type]
    folded.add(Chunk(type="function_call", tool_calls=(flat,)))  # type: ignore[arg-type]
    folded.add(Chunk(tool_calls=(flat,)))  # type: ignore[arg-type]
    first, second = folded.result().tool_calls
    assert first == ToolCall("c1", "f", "{}")
    assert second.name == "g" and second.id.startswith("call_") and second.arguments == {"x": 1}


def test_tool_call_wire_shapes() -> None:
    call = ToolCall("c1", "weather", '{"city": "Paris"}')
    assert call.openai() == {
        "id": "c1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    assert call.ollama() == {"function": {"name": "weather", "arguments": {"city": "Paris"}}}
    assert json.loads(ToolCall("c", "f", {"a": 1}).openai()["function"]["arguments"]) == {"a": 1}
    assert ToolCall("c", "f", "").arguments_json == "{}"
    assert ToolCall("c", "f", "not json").ollama()["function"]["arguments"] == {"value": "not json"}
    odd = ToolCall.of({"function": "not an object"})  # a client's malformed call: no crash
    assert odd.name == "" and odd.arguments == {}


async def test_join_stream_closes_the_stream_and_round_trips_result_chunks() -> None:
    closed: list[bool] = []
    result = Result((Output("text", text="hi"), IMAGE), Usage(1, 1), "stop", (ToolCall("c", "f"),))

    async def source() -> AsyncIterator[Chunk]:
        try:
            for chunk in result_chunks(result):
                yield chunk
        finally:
            closed.append(True)

    joined = await join_stream(source())
    assert closed == [True]
    assert joined == result


def test_a_text_chunk_is_the_dataclass_built_with_its_fields() -> None:
    """`Chunk.text` equals `Chunk(content=..., thoughts=...)`: fields, order, repr, frozen."""
    fast, slow = Chunk.text("tok", "why"), Chunk(content="tok", thoughts="why")
    assert fast == slow and repr(fast) == repr(slow)
    assert list(vars(fast).items()) == list(vars(slow).items())
    assert Chunk.text("a").metadata is not Chunk.text("b").metadata  # one dict per chunk
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.content = "other"  # type: ignore[misc]
