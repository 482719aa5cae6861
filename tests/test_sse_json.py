"""SSE events are encoded exactly as the compact `json.JSONEncoder` encodes them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lollms_server.httpkit.sse import COMPACT, to_json

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
