"""LeanSchema loads exactly as marshmallow does: same results (key order included), same errors
(their order and valid data included), for the request schemas of every face."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import INCLUDE, Schema, ValidationError, fields

from lollms_server.faces.lollms.schemas import GenerateSchema, TokenizeSchema
from lollms_server.faces.ollama.schemas import OllamaChatSchema, OllamaGenerateSchema
from lollms_server.faces.openai.schemas import ChatCompletionSchema, CompletionSchema
from lollms_server.lean_schema import MAX_VIEWS, LeanSchema

USER = {"role": "user", "content": "hi"}
CASES: list[tuple[type[Schema], Any]] = [
    (ChatCompletionSchema, {"model": "a/b", "messages": [USER]}),
    (ChatCompletionSchema, {"model": "a/b", "messages": [USER], "stream": True}),
    (
        ChatCompletionSchema,
        {
            "model": "a/b",
            "messages": [
                {"role": "system", "content": "be brief"},
                USER,
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "temperature": 0.5,
            "max_tokens": 20,
            "stop": ["x"],
            "stream_options": {"include_usage": True},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "seed": 3,
        },
    ),
    (ChatCompletionSchema, {"messages": [USER], "temperature": 9, "n": 3, "bogus": 1}),
    (ChatCompletionSchema, {"model": "a/b"}),
    (ChatCompletionSchema, {"model": "a/b", "messages": [{"content": "no role", "x": 1}]}),
    (ChatCompletionSchema, {"model": None, "messages": "not a list", "top_p": "high"}),
    (CompletionSchema, {"model": "a/b", "prompt": "once", "echo": True}),
    (GenerateSchema, {"input_data": [{"type": "text", "data": "hi"}], "unknown_thing": 1}),
    (GenerateSchema, {"text_prompt": "hi", "parameters": {"temperature": 0.1}, "stream": True}),
    (GenerateSchema, {"input_data": [{"type": "nope"}], "generation_type": "zzz"}),
    (TokenizeSchema, {"text": "hello", "model_name": "m"}),
    (OllamaChatSchema, {"model": "m", "messages": [USER], "options": {"num_predict": 5}}),
    (OllamaChatSchema, {"model": "m", "keep_alive": "5m", "format": "json", "think": True}),
    (OllamaGenerateSchema, {"prompt": "p", "options": {"temperature": "hot"}}),
]


def load(schema: Schema, data: Any) -> tuple[str, Any]:
    """What a load gives: the result, or the error's messages and valid data, as reprs (key
    order counts)."""
    try:
        return "ok", repr(schema.load(data))
    except ValidationError as exc:
        return "error", repr((exc.messages, exc.valid_data))


@pytest.mark.parametrize(("schema", "data"), CASES)
def test_lean_load_equals_marshmallows(
    schema: type[Schema], data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert issubclass(schema, LeanSchema)
    instance = schema()
    lean = [load(instance, data), load(instance, data)]  # the second through the cached view
    monkeypatch.setattr(LeanSchema, "_deserialize", Schema._deserialize)
    assert lean == [load(schema(), data)] * 2


class Included(LeanSchema):
    """unknown = INCLUDE, a renamed attribute, a data key and a computed default."""

    class Meta:
        unknown = INCLUDE

    a = fields.Integer(load_default=1)
    b = fields.String(attribute="bee", data_key="B")
    c = fields.List(fields.Integer(), load_default=list)
    d = fields.Integer(required=True)


@pytest.mark.parametrize(
    "data", [{"d": 1}, {"B": "x", "d": 2, "extra": 3}, {"zz": 1, "a": "bad"}, {"b": "x", "d": 1}]
)
def test_lean_options_equal_marshmallows(data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lean = load(Included(), data)
    monkeypatch.setattr(LeanSchema, "_deserialize", Schema._deserialize)
    assert lean == load(Included(), data)


def test_views_are_bounded() -> None:
    schema = ChatCompletionSchema()
    optional = ["temperature", "top_p", "seed", "user", "top_k", "min_p", "n", "stop", "store"]
    for mask in range(2 ** len(optional)):
        body: dict[str, Any] = {"messages": [USER]}
        body.update({name: None for bit, name in enumerate(optional) if mask >> bit & 1})
        schema.load(body)
    assert 0 < len(schema.__dict__["_lean_index"].views) <= MAX_VIEWS
