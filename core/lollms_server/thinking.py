"""Separating `<think>...</think>` reasoning from answer text, whole or streamed."""

from __future__ import annotations

import dataclasses

from .bindings import Chunk, Output, Result

OPEN = "<think>"
CLOSE = "</think>"


def split_thoughts(text: str) -> tuple[str, str | None]:
    """Return (answer, thoughts) for a whole text; thoughts is None when there were none."""
    splitter = ThinkSplitter()
    answer, thoughts = splitter.feed(text)
    tail_answer, tail_thoughts = splitter.flush()
    answer += tail_answer
    thoughts += tail_thoughts
    return answer, (thoughts if splitter.saw_thoughts else None)


class ThinkSplitter:
    """Incremental splitter: feed streamed text, get (answer, thoughts) pieces back."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""
        self.saw_thoughts = False

    def feed(self, text: str) -> tuple[str, str]:
        """Consume a piece of text; return the answer and thought text now known."""
        buffer = self.pending + text
        self.pending = ""
        answer: list[str] = []
        thoughts: list[str] = []
        while buffer:
            tag = CLOSE if self.inside else OPEN
            index = buffer.find(tag)
            if index >= 0:
                (thoughts if self.inside else answer).append(buffer[:index])
                buffer = buffer[index + len(tag) :]
                self.inside = not self.inside
                self.saw_thoughts = True
                continue
            keep = _partial_tag_suffix(buffer, tag)
            (thoughts if self.inside else answer).append(buffer[: len(buffer) - keep])
            self.pending = buffer[len(buffer) - keep :]
            break
        return "".join(answer), "".join(thoughts)

    def flush(self) -> tuple[str, str]:
        """Return whatever is held back at the end of the stream."""
        rest, self.pending = self.pending, ""
        return ("", rest) if self.inside else (rest, "")


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a prefix of `tag`."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def split_chunk_thoughts(splitter: ThinkSplitter, chunk: Chunk) -> Chunk:
    """A streamed chunk with its `<think>` text moved to `thoughts`."""
    if chunk.type != "chunk" or not chunk.content:
        return chunk
    if not (splitter.inside or splitter.pending or "<" in chunk.content):
        return chunk  # the common case, without copying the chunk
    answer, thoughts = splitter.feed(chunk.content)
    return dataclasses.replace(chunk, content=answer, thoughts=chunk.thoughts + thoughts)


def split_result_thoughts(result: Result) -> Result:
    """A result whose text outputs have their `<think>` part moved to `thoughts`."""
    outputs: list[Output] = []
    split = False
    for output in result.outputs:
        if output.type == "text" and output.thoughts is None and "<think>" in output.text:
            answer, thoughts = split_thoughts(output.text)
            output, split = dataclasses.replace(output, text=answer, thoughts=thoughts), True
        outputs.append(output)
    if not split and isinstance(result.outputs, tuple):
        return result  # nothing to move: the result as it is, not a copy
    return dataclasses.replace(result, outputs=tuple(outputs))
