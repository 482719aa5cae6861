"""Encoders built once write what `JSONEncoder.encode` writes: SSE events, log lines, audit
details, JSON answers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest

from lollms_server.bindings import Chunk
from lollms_server.faces.openai.chat import ChatShape, CompletionShape, _ChunkWriter
from lollms_server.httpkit.burst import BurstResponse
from lollms_server.httpkit.sse import COMPACT, SLOT, EventTemplate, _event, to_json
from lollms_server.json_encoding import dumps, one_shot

VALUES: list[Any] = [
    {"id": "chatcmpl-1", "created": 1700000000, "system_fingerprint": None,
     "choices": [{"index": 0, "delta": {"content": "tok "}, "logprobs": None}]},
    {"text": "héllo \u2028 \U0001f600 \"quoted\" \\ \n\t", "ok": True, "no": False},
    {"floats": [0.1, 1e300, -0.0, 3.0, math.inf, -math.inf], "big": 10**30},
    [1, "two", [3, {"4": None}]], {1: "int key", 2.5: "float key", None: "null key"},
    "a bare string", 7, None,
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES)
def test_events_encode_as_the_compact_encoder(value: Any) -> None:
    """Text, separators, escapes, floats and keys as `COMPACT.encode` writes them."""
    assert to_json(value) == COMPACT.encode(value)


def test_nan_and_unserializable_values_as_the_compact_encoder() -> None:
    """NaN is written as `NaN`; a value JSON cannot hold is the same TypeError."""
    assert to_json({"x": math.nan}) == COMPACT.encode({"x": math.nan})
    with pytest.raises(TypeError) as ours:
        to_json({"x": object})
    with pytest.raises(TypeError) as theirs:
        COMPACT.encode({"x": object})
    assert str(ours.value) == str(theirs.value)


ENCODERS = [
    json.JSONEncoder(), json.JSONEncoder(sort_keys=True), json.JSONEncoder(default=str),
    json.JSONEncoder(ensure_ascii=False), json.JSONEncoder(indent=2),
]  # fmt: skip


def _outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return "text", encode(value)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("value", VALUES)
def test_one_shot_writes_what_encode_writes(encoder: json.JSONEncoder, value: Any) -> None:
    """Sorted keys, `default`, non-ASCII text and indents as the encoder itself writes them
    (or the same error: mixed key types cannot be sorted)."""
    assert _outcome(one_shot(encoder), value) == _outcome(encoder.encode, value)


def test_dumps_is_json_dumps_and_default_is_called() -> None:
    """`dumps` writes `json.dumps`' text; a `default` encoder turns unknown values to text."""
    assert dumps(VALUES[0]) == json.dumps(VALUES[0])
    assert (
        one_shot(json.JSONEncoder(default=str))({"d": date(2026, 12, 3)}) == '{"d": "2026-12-03"}'
    )


TEXTS = ["tok ", "", 'héllo \u2028 \U0001f600 "quoted" \\ \n\t\x00', "\x00lollms", "}]},{"]


@pytest.mark.parametrize("text", TEXTS)
def test_event_template_writes_the_event_of_the_whole_object(text: str) -> None:
    """The template's event is `send_event`'s bytes for the object with the text in place."""
    template = EventTemplate({"a": [1, {"delta": {"content": SLOT}}], "b": None})
    assert template.event(text) == _event({"a": [1, {"delta": {"content": text}}], "b": None})


def test_event_template_needs_its_slot_once() -> None:
    """A template without the slot, or with it twice, is refused when made."""
    with pytest.raises(ValueError):
        EventTemplate({"a": "no slot"})
    with pytest.raises(ValueError):
        EventTemplate({"a": SLOT, "b": SLOT})


@pytest.mark.parametrize("shape_of", [ChatShape, partial(CompletionShape, prefix="")])
@pytest.mark.parametrize("usage_on", [True, False])
@pytest.mark.parametrize("text", TEXTS[:1] + TEXTS[2:])
def test_openai_text_chunks_are_the_whole_chunk_objects(
    shape_of: Callable[[Any], ChatShape], usage_on: bool, text: str
) -> None:
    """The OpenAI face writes a text chunk from its template: the same bytes as the chunk
    object built and encoded whole, for chat and legacy completion chunks."""
    prepared = SimpleNamespace(
        request=SimpleNamespace(request_id="0123abcd"), target=SimpleNamespace(ref="mock/m")
    )
    shape = shape_of(prepared)
    writer = _ChunkWriter(cast(BurstResponse, None), shape, usage_on)
    whole = _event(writer._body(shape.delta(Chunk.text(text), 0), None))
    assert writer.text_event(text) == whole
