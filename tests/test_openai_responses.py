"""The real `openai` SDK's Responses API (`client.responses`) against the server, stateless."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

Client = TestClient[Any, Any]
WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "the weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


async def test_text_input(sdk: AsyncOpenAI) -> None:
    response = await sdk.responses.create(
        model="echo/echo", input="hello world", instructions="be brief", max_output_tokens=50
    )
    assert response.object == "response" and response.status == "completed"
    assert response.model == "echo/echo" and response.id.startswith("resp_")
    assert response.output_text == "hello world"
    assert response.instructions == "be brief" and response.max_output_tokens == 50
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 2)
    assert response.usage.total_tokens == 6


async def test_message_items_and_reasoning(sdk: AsyncOpenAI) -> None:
    response = await sdk.responses.create(
        model="echo/think",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "why"}]},
        ],
    )
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.content is not None
    assert reasoning.content[0].text == "The user said: why"
    assert response.output_text == "why"


async def test_stream_events_in_order(sdk: AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="echo/echo", input="one two three", stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three" and len(deltas) == 3
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == "one two three"
    assert completed.usage is not None and completed.usage.output_tokens == 3


async def test_sdk_stream_helper_collects_the_final_response(sdk: AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="echo/think", input="why not") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "why not"
    assert [item.type for item in final.output] == ["reasoning", "message"]


async def test_function_calls_round_trip(sdk: AsyncOpenAI) -> None:
    prompt = 'CALL weather {"city": "Paris"}'
    first = await sdk.responses.create(model="echo/echo", input=prompt, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    second = await sdk.responses.create(
        model="echo/echo",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": prompt},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"},
        ],
    )
    assert "sunny, 21C" in second.output_text
    assert not [item for item in second.output if item.type == "function_call"]


async def test_streamed_function_call(sdk: AsyncOpenAI) -> None:
    stream = await sdk.responses.create(
        model="echo/echo", input='CALL weather {"city": "Oslo"}', tools=[WEATHER], stream=True
    )
    events = [event async for event in stream]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and json.loads(done[0].arguments) == {"city": "Oslo"}
    final = events[-1].response
    assert [item.type for item in final.output] == ["function_call"]


async def test_image_input_reaches_a_vision_check(sdk: AsyncOpenAI) -> None:
    pixel = base64.b64encode(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC"
        )
    ).decode()
    content = [
        {"type": "input_text", "text": "what is it"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{pixel}"},
    ]
    try:
        response = await sdk.responses.create(
            model="echo/echo", input=[{"role": "user", "content": content}]
        )
    except openai.APIStatusError as exc:  # echo without vision: a clear 4xx/501, never a 500
        assert exc.status_code in (400, 501) and "image" in str(exc.message)
    else:
        assert response.output_text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input",
        ),
        ({"text": {"format": {"type": "xml"}}}, "text"),
        ({"input": []}, "input"),
    ],
)
async def test_what_needs_storage_or_is_not_served_is_a_400(
    sdk: AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": "echo/echo", "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(**arguments)
    assert param in str(raised.value.message)


async def test_error_after_the_first_token_is_an_error_event(sdk: AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="echo/fail", input="a b c", stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert "response.output_text.delta" in types
    assert types[-2:] == ["error", "response.failed"]
    assert "fails on purpose" in events[-2].message
    assert events[-1].response.status == "failed"
    # the text streamed before the failure is in the failed response's output, as OpenAI's is,
    # its message closed as incomplete (every item added is done)
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    failed = events[-1].response
    assert streamed and failed.output_text == streamed
    assert [item.status for item in failed.output] == ["incomplete"]  # type: ignore[union-attr]
    added = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert [e.item.id for e in events if e.type == "response.output_item.done"] == added


async def test_unknown_model_is_a_404_before_any_event(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="echo/nope", input="hi", stream=True)


async def test_json_schema_format_reaches_the_binding_as_response_format(client: Client) -> None:
    body = {
        "model": "echo/echo",
        "input": "hi",
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"},
    }
    answer = await client.post("/v1/responses", json=body)
    assert answer.status == 200, await answer.text()
    data = await answer.json()
    assert data["text"]["format"]["type"] == "json_schema"
    assert data["reasoning"]["effort"] == "low" and data["store"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"input": [1, 2]},
        {"input": [{"role": "user", "content": [1]}]},
        {"input": [{"role": "user", "content": {"a": 1}}]},
        {"input": [{"role": "robot", "content": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        {"input": [{"role": "system", "content": "only a system message"}]},
        {"input": [{"type": "function_call", "name": 3}]},
        {"input": [{"type": "function_call_output", "call_id": "c", "output": {"x": 1}}]},
        {"input": [{"type": "mystery"}]},
        {"input": "hi", "tools": [{"type": "function"}]},
        {"input": "hi", "tools": ["x"]},
        {"input": "hi", "tool_choice": 7},
        {"input": "hi", "text": {"format": "json"}},
        {"input": "hi", "reasoning": {"effort": {"deep": 1}}},
        {"input": "hi", "max_output_tokens": 0},
        {"input": "hi", "truncation": "sometimes"},
        {"input": None},
        {},
    ],
)
async def test_malformed_bodies_are_400s(client: Client, body: dict[str, Any]) -> None:
    answer = await client.post("/v1/responses", json={"model": "echo/echo", **body})
    assert answer.status == 400, await answer.text()
    error = (await answer.json())["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize(
    ("model", "prompt"),
    [("echo/echo", "hello world"), ("echo/think", "why"), ("echo/echo", 'CALL weather {"a": 1}')],
)
async def test_answers_and_events_match_the_sdk_models(
    client: Client, model: str, prompt: str
) -> None:
    """Every field the SDK's types require is there: the whole answer validates as a `Response`,
    every streamed event as a `ResponseStreamEvent` named by its `event:` line."""
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    body = {"model": model, "input": prompt, "tools": [WEATHER]}
    whole = await client.post("/v1/responses", json=body)
    Response.model_validate(await whole.json())
    streamed = await client.post("/v1/responses", json={**body, "stream": True})
    events = TypeAdapter(ResponseStreamEvent)
    blocks = [b for b in (await streamed.text()).split("\n\n") if b.strip()]
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        events.validate_python(event)
    assert len(blocks) >= 7


async def test_a_failed_stream_matches_the_sdk_models(client: Client) -> None:
    """`response.failed` carries an error code of the SDK's `ResponseError` enum (ours stays on
    the `error` event and in `type`): a strict reader validates every event."""
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    body = {"model": "echo/fail", "input": "a b c", "stream": True}
    streamed = await client.post("/v1/responses", json=body)
    blocks = [b for b in (await streamed.text()).split("\n\n") if b.strip()]
    events = [
        json.loads(dict(line.split(": ", 1) for line in b.split("\n"))["data"]) for b in blocks
    ]
    for event in events:
        TypeAdapter(ResponseStreamEvent).validate_python(event)
    error, failed = events[-2], events[-1]
    assert error["type"] == "error" and error["code"] == "backend_unavailable"
    assert failed["response"]["error"]["code"] == "server_error"
    assert failed["response"]["error"]["type"] == "backend_unavailable"


async def test_chat_sampling_extensions_are_taken(client: Client) -> None:
    """Open WebUI's Responses connection sends chat's extra sampling names top level."""
    body = {"model": "echo/echo", "input": "hi", "seed": 3, "min_p": 0.1}
    body |= {"repeat_penalty": 1.1, "reasoning_effort": "low", "top_k": 20}
    answer = await client.post("/v1/responses", json=body)
    assert answer.status == 200, await answer.text()


async def test_an_answer_cut_by_max_output_tokens_is_an_incomplete_item(sdk: AsyncOpenAI) -> None:
    """A message cut by `max_output_tokens` is `status: "incomplete"` in an incomplete response,
    as OpenAI answers (pydantic-ai reads the item's status), whole and streamed, with the text
    it has. Before, the cut item said "completed" inside the incomplete response."""
    asked: Any = {"model": "echo/echo", "input": "one two three four", "max_output_tokens": 2}
    whole = await sdk.responses.create(**asked)
    assert whole.status == "incomplete" and whole.output_text == "one two"
    assert [item.status for item in whole.output] == ["incomplete"]  # type: ignore[union-attr]
    events = [event async for event in await sdk.responses.create(**asked, stream=True)]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.status for item in done] == ["incomplete"]  # type: ignore[union-attr]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert [item.status for item in last.response.output] == ["incomplete"]  # type: ignore[union-attr]
    assert last.response.output_text == "one two"
