"""The pieces of a generation's answer: chunks, tool calls, results, and the one accumulator
that folds a chunk stream into a result (every face and the tool loop use it)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolCall:
    """One call the model asks for: its id, the function's name and its arguments (a JSON
    text or an object, as the model sent them)."""

    id: str
    name: str
    arguments: Any = field(default_factory=dict)

    @classmethod
    def of(cls, call: ToolCall | Mapping[str, Any]) -> ToolCall:
        """A call in OpenAI's shape (`function.name`), a flat `{name, arguments}`, or a ToolCall."""
        if isinstance(call, ToolCall):
            return call
        function = call.get("function")
        if not isinstance(function, Mapping):
            function = {}
        return cls(
            id=str(call.get("id") or f"call_{uuid.uuid4().hex[:16]}"),
            name=str(function.get("name", call.get("name", ""))),
            arguments=function.get("arguments", call.get("arguments", {})),
        )

    @property
    def arguments_json(self) -> str:
        """The arguments as a JSON text (OpenAI's wire shape)."""
        if isinstance(self.arguments, str):
            return self.arguments or "{}"
        return json.dumps(self.arguments)

    @property
    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object (Ollama's wire shape); a non-object is `{"value": ...}`."""
        arguments = self.arguments
        if isinstance(arguments, str):
            with suppress(ValueError):
                arguments = json.loads(arguments)
        return dict(arguments) if isinstance(arguments, dict) else {"value": arguments}

    def openai(self) -> dict[str, Any]:
        """The call in OpenAI's shape (arguments as a JSON text)."""
        function = {"name": self.name, "arguments": self.arguments_json}
        return {"id": self.id, "type": "function", "function": function}

    def ollama(self) -> dict[str, Any]:
        """The call in Ollama's shape (arguments as an object)."""
        return {"function": {"name": self.name, "arguments": self.arguments_object}}


def tool_calls(calls: Iterable[ToolCall | Mapping[str, Any]]) -> tuple[ToolCall, ...]:
    """Calls of any accepted shape as ToolCalls."""
    return tuple(ToolCall.of(call) for call in calls)


def replayable(call: ToolCall) -> ToolCall:
    """The call as a history repeats it to a model: arguments that are not JSON (a call cut
    short by max_tokens, replayed by the function loop or by a client) become `{}`, since
    backends that parse the history (llama.cpp) refuse the whole request; the tool message
    tells the model what came of the call."""
    if isinstance(call.arguments, str) and call.arguments.strip():
        try:
            json.loads(call.arguments)
        except ValueError:
            return dataclasses.replace(call, arguments={})
    return call


@dataclass(frozen=True)
class Usage:
    """Token accounting for text generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class Output:
    """One produced item: text, or binary media with its mime type."""

    type: str
    text: str = ""
    data: bytes = b""
    mime_type: str = "text/plain"
    thoughts: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One streamed event from a binding: text, progress info, or a finished output.

    `tool_calls` may be given as mappings (OpenAI's or a flat shape): they become ToolCalls.
    """

    type: Literal["chunk", "info", "function_call"] = "chunk"
    content: str = ""
    thoughts: str = ""
    output: Output | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tool_calls:
            object.__setattr__(self, "tool_calls", tool_calls(self.tool_calls))

    @classmethod
    def text(cls, content: str, thoughts: str = "") -> Chunk:
        """`Chunk(content=content, thoughts=thoughts)`, built without the frozen `__init__`'s
        eight `object.__setattr__` calls (a stream builds one per token: 1.7 -> 1.0 µs)."""
        chunk = object.__new__(cls)
        chunk.__dict__.update(_TEXT_CHUNK, content=content, thoughts=thoughts, metadata={})
        return chunk


_TEXT_CHUNK: dict[str, Any] = {  # Chunk's fields in their declared order, with the defaults
    f.name: f.default for f in dataclasses.fields(Chunk) if f.default is not dataclasses.MISSING
}
_TEXT_CHUNK["metadata"] = None  # a new dict per chunk, as the field's default_factory gives


@dataclass(frozen=True)
class Result:
    """A finished generation."""

    outputs: tuple[Output, ...]
    usage: Usage | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()

    def __post_init__(self) -> None:
        if self.tool_calls:
            object.__setattr__(self, "tool_calls", tool_calls(self.tool_calls))

    @property
    def text(self) -> Output:
        """The text output (empty when the result holds media only)."""
        for output in self.outputs:
            if output.type == "text":
                return output
        return Output("text")


@dataclass
class Accumulator:
    """What a chunk stream said so far: text, thoughts, tool calls, usage, finish, media.

    `add` takes every chunk; `info` and `function_call` events change nothing.
    """

    texts: list[str] = field(default_factory=list)
    thought_parts: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    media: list[Output] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None

    def add(self, chunk: Chunk) -> Chunk:
        """Fold one chunk in; return it (so a relay can fold and pass on in one step)."""
        if chunk.type != "chunk":
            return chunk
        if chunk.content:
            self.texts.append(chunk.content)
        if chunk.thoughts:
            self.thought_parts.append(chunk.thoughts)
        if chunk.output is not None:
            self.media.append(chunk.output)
        self.calls.extend(chunk.tool_calls)
        self.usage = chunk.usage or self.usage
        self.finish_reason = chunk.finish_reason or self.finish_reason
        return chunk

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return "".join(self.texts)

    @property
    def thoughts(self) -> str:
        """The reasoning text so far."""
        return "".join(self.thought_parts)

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The text output (when there is text, thoughts or no media) then the media."""
        text, thoughts = self.text, self.thoughts
        head = (Output("text", text=text, thoughts=thoughts or None),)
        return (head if text or thoughts or not self.media else ()) + tuple(self.media)

    def result(self, default_finish: str = "stop") -> Result:
        """Everything folded so far as one Result."""
        finish = self.finish_reason or default_finish
        return Result(self.outputs, self.usage, finish, tuple(self.calls))


async def join_stream(chunks: AsyncIterator[Chunk]) -> Result:
    """Collect a binding's stream into one Result (text joined, media outputs kept)."""
    folded = Accumulator()
    async with closing_stream(chunks) as stream:
        async for chunk in stream:
            if (problem := chunk_problem(chunk)) is not None:
                raise TypeError(problem)
            folded.add(chunk)
    return folded.result()


def result_chunks(result: Result) -> list[Chunk]:
    """A finished Result as chunks (tool calls ride on the last one)."""
    chunks = [
        Chunk(
            content=output.text if output.type == "text" else "",
            thoughts=output.thoughts or "",
            output=None if output.type == "text" else output,
            usage=result.usage,
            finish_reason=result.finish_reason,
        )
        for output in result.outputs
    ] or [Chunk(usage=result.usage, finish_reason=result.finish_reason)]
    chunks[-1] = dataclasses.replace(chunks[-1], tool_calls=result.tool_calls)
    return chunks


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[Chunk]) -> AsyncIterator[AsyncIterator[Chunk]]:
    """Close a chunk stream (its `aclose`) however the consumer leaves the block."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def chunk_problem(chunk: object) -> str | None:
    """What is wrong with an item a binding's `stream()` yielded (not a Chunk, or a Chunk
    holding the wrong types), or None: the core reads its fields as declared."""
    if not isinstance(chunk, Chunk):
        return f"stream() yielded {type(chunk).__name__}, not a Chunk"
    text = type(chunk.content) is str and type(chunk.thoughts) is str and chunk.output is None
    if text and chunk.usage is None:  # the fast path
        return None
    for name, kind in (("content", str), ("thoughts", str)):
        if not isinstance(getattr(chunk, name), kind):
            return _wrong("stream() yielded a Chunk", name, getattr(chunk, name), kind)
    if (problem := usage_problem("stream() yielded a Chunk", chunk.usage)) is not None:
        return problem
    return None if chunk.output is None else output_problem("stream() yielded", chunk.output)


def result_problem(result: Result) -> str | None:
    """What is wrong inside a Result a binding's `generate()` returned, or None."""
    if not isinstance(result.outputs, list | tuple):
        return _wrong("generate() returned a Result", "outputs", result.outputs, tuple)
    if (problem := usage_problem("generate() returned a Result", result.usage)) is not None:
        return problem
    for output in result.outputs:
        if (problem := output_problem("generate() returned", output)) is not None:
            return problem
    return None


def usage_problem(where: str, usage: object) -> str | None:
    """What is wrong with a usage a binding reported (not a Usage, or a count that is not a
    whole number of at least 0: token counters and budgets cannot take it), or None."""
    if usage is None:
        return None
    if not isinstance(usage, Usage):
        return _wrong(where, "usage", usage, Usage)
    for name in ("prompt_tokens", "completion_tokens"):
        count = getattr(usage, name)
        if type(count) is not int or count < 0:
            return f"{where} whose usage has {name} = {count!r}, not a count of 0 or more"
    return None


def output_problem(where: str, output: object) -> str | None:
    """What is wrong with one Output a binding produced, or None."""
    if not isinstance(output, Output):
        return f"{where} {type(output).__name__} as an output, not an Output"
    if not isinstance(output.text, str):
        return _wrong(f"{where} an Output", "text", output.text, str)
    if not isinstance(output.data, bytes | bytearray | memoryview):
        return _wrong(f"{where} an Output", "data", output.data, bytes)
    return None


def _wrong(where: str, name: str, value: object, kind: type) -> str:
    return f"{where} whose {name} is {type(value).__name__}, not {kind.__name__}"
