"""The SSE parser of upstream streams: events however the bytes are split, CRLF, multi-line
data, a last event without its blank line, and the size bound; events' JSON decoded as
`json.loads` decodes it."""

from __future__ import annotations

import json

import pytest

from lollms_server.errors import BackendError
from lollms_server.upstream_sse import MAX_EVENT_BYTES, SseParser, json_of

STREAM = (
    b': a comment\r\nevent: x\r\ndata: {"a": 1}\r\n\r\n'
    b"data: line one\ndata:line two\n\n"
    b"id: 3\n\n"
    b"data: [DONE]\n\n"
    b"data: no blank line at the end"
)
EVENTS = [b'{"a": 1}', b"line one\nline two", b"[DONE]", b"no blank line at the end"]


def parse(pieces: list[bytes]) -> list[bytes]:
    """Every event of `pieces`, then the end of the body."""
    parser = SseParser("upstream")
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events + parser.feed(b"\n\n")


@pytest.mark.parametrize("size", [1, 2, 7, len(STREAM)])
def test_events_whatever_the_split(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse(pieces) == EVENTS


def test_an_event_over_the_bound_is_a_backend_error() -> None:
    parser = SseParser("upstream")
    parser.feed(b"data: " + b"x" * (MAX_EVENT_BYTES // 2) + b"\n")
    with pytest.raises(BackendError, match="over"):
        parser.feed(b"data: " + b"x" * (MAX_EVENT_BYTES // 2 + 1) + b"\n")


JSON_TEXTS = [
    '{"choices": [{"delta": {"content": "tok"}}]}', "[1, 2]", '"text"', "12", "null",
    ' {"a": 1}', '{"a": 1} ', '{"a": 1}\n', "\ufeff{}", '{"a": 1} {"b": 2}', '{"a": 1}x',
    "", " ", "{", "nope", '{"a": NaN}', "1 2",
]  # fmt: skip


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_json_of_answers_as_json_loads(text: str) -> None:
    """The same value, or the same error (type and message), as `json.loads`."""
    try:
        expected = json.loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc)) as raised:
            json_of(text)
        assert str(raised.value) == str(exc)
    else:
        assert json_of(text) == expected
