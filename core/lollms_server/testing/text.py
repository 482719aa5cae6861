"""Contracts of text generation (`ttt`) and of streaming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import pytest

from ..bindings import Binding, Chunk, GenerationRequest, Result, join_stream
from ..errors import ModelNotFound
from .base import ContractBase, contract, text_of
from .fixtures import within


class TextContract(ContractBase):
    """`ttt` generate: text comes back, usage adds up, limits hold, unknown models are 404s."""

    max_tokens: ClassVar[int] = 3
    honours_max_tokens: ClassVar[bool] = True
    reports_length_finish: ClassVar[bool] = True
    honours_stop: ClassVar[bool] = True
    stop_prompt: ClassVar[str] = "Repeat exactly, in lower case: one two three four five six"
    stop_sequence: ClassVar[str] = "five"
    unknown_model: ClassVar[str] = "lollms-contract-no-such-model"

    async def generate(self, binding: Binding, request: GenerationRequest) -> Result:
        """`binding.generate(request)`, failing the test after `request_timeout_s`."""
        result = await within(self.request_timeout_s, binding.generate(request), "generate()")
        assert isinstance(result, Result), f"generate() returned {type(result).__name__}"
        return result

    @contract("ttt")
    async def test_generate_returns_text(self, binding: Binding) -> None:
        """A prompt gives a non-empty text output; reported usage is consistent."""
        result = await self.generate(binding, self.make_request())
        text = text_of(result)
        assert text.strip(), f"empty text from {self.model!r}: {result!r}"
        assert result.finish_reason, "finish_reason must be set"
        if result.usage is not None:
            assert result.usage.prompt_tokens >= 0
            assert result.usage.completion_tokens >= 1, f"text came back but {result.usage}"
            total = result.usage.prompt_tokens + result.usage.completion_tokens
            assert result.usage.total_tokens == total

    @contract("ttt")
    async def test_max_tokens_is_respected(self, binding: Binding) -> None:
        """`max_tokens` caps the answer (a word is at least one token) and says `length`."""
        if not self.honours_max_tokens:
            pytest.skip(f"{type(self).__name__} sets honours_max_tokens = False")
        limit = self.max_tokens
        result = await self.generate(binding, self.make_request(max_tokens=limit))
        words = text_of(result).split()
        assert len(words) <= limit, f"max_tokens={limit} but got {len(words)} words: {words}"
        if result.usage is not None:
            assert result.usage.completion_tokens <= limit, f"max_tokens={limit}: {result.usage}"
        if self.reports_length_finish:
            assert result.finish_reason == "length", f"finish_reason {result.finish_reason!r}"

    @contract("ttt")
    async def test_stop_sequence_is_respected(self, binding: Binding) -> None:
        """Generation ends before a `stop` sequence, which is not part of the text."""
        if not self.honours_stop:
            pytest.skip(f"{type(self).__name__} sets honours_stop = False")
        free = await self.generate(
            binding, self.make_request(prompt=self.stop_prompt, max_tokens=32)
        )
        if self.stop_sequence not in text_of(free):
            pytest.skip(
                f"without `stop` the model never wrote {self.stop_sequence!r} "
                f"({text_of(free)!r}); set `stop_prompt`/`stop_sequence` to ones it does write"
            )
        request = self.make_request(
            prompt=self.stop_prompt, stop=[self.stop_sequence], max_tokens=32
        )
        text = text_of(await self.generate(binding, request))
        assert self.stop_sequence not in text, f"stop {self.stop_sequence!r} in {text!r}"

    @contract("ttt")
    async def test_unknown_model_is_model_not_found(self, binding: Binding) -> None:
        """A model the backend does not have raises ModelNotFound (a 404), not a 500."""
        request = self.make_request(model=self.unknown_model)
        with pytest.raises(ModelNotFound):
            await self.generate(binding, request)


class StreamingContract(ContractBase):
    """`stream()`: several chunks, the same shape as generate, early close releases it."""

    min_stream_chunks: ClassVar[int] = 2
    deterministic_text: ClassVar[bool] = False
    stream_model: ClassVar[str | None] = None
    close_timeout_s: ClassVar[float] = 5.0

    def open_stream(
        self, binding: Binding, request: GenerationRequest
    ) -> AsyncGenerator[Chunk, None]:
        """`binding.stream(request)`, which must be closable (an async generator)."""
        stream: AsyncIterator[Chunk] = binding.stream(request)
        assert hasattr(stream, "aclose"), "stream() must return an async generator (aclose)"
        closable: AsyncGenerator[Chunk, None] = stream  # type: ignore[assignment]
        return closable

    async def collect(self, binding: Binding, request: GenerationRequest) -> list[Chunk]:
        """Every chunk of a stream, failing the test after `request_timeout_s`."""

        async def drain() -> list[Chunk]:
            async with aclosing(self.open_stream(binding, request)) as stream:
                return [chunk async for chunk in stream]

        return await within(self.request_timeout_s, drain(), "stream()")

    def long_request(self) -> GenerationRequest:
        """The request whose stream the early-close tests abandon."""
        return self.make_request(model=self.stream_model or self.model_for("ttt"))

    @contract("ttt", "stream")
    async def test_stream_yields_several_chunks(self, binding: Binding) -> None:
        """A stream of Chunk objects with text spread over several of them."""
        chunks = await self.collect(binding, self.make_request())
        assert all(isinstance(c, Chunk) for c in chunks), [type(c).__name__ for c in chunks]
        with_text = [c for c in chunks if c.type == "chunk" and c.content]
        assert len(with_text) >= self.min_stream_chunks, (
            f"expected >= {self.min_stream_chunks} text chunks; got {len(with_text)}: {chunks}"
        )
        assert "".join(c.content for c in with_text).strip()

    @contract("ttt", "stream")
    async def test_stream_joins_like_generate(self, binding: Binding) -> None:
        """The joined stream has the shape of generate()'s result (equal text if deterministic)."""
        request = self.make_request()
        chunks = await self.collect(binding, request)

        async def replay() -> AsyncIterator[Chunk]:
            for chunk in chunks:
                yield chunk

        joined = await join_stream(replay())
        whole = await within(self.request_timeout_s, binding.generate(request), "generate()")
        assert [o.type for o in joined.outputs] == [o.type for o in whole.outputs]
        assert text_of(joined).strip() and text_of(whole).strip()
        if self.deterministic_text:
            assert text_of(joined) == text_of(whole)

    @contract("ttt", "stream")
    async def test_aclose_after_first_chunk_releases_the_stream(self, binding: Binding) -> None:
        """aclose() after one chunk returns promptly and the next request still works."""
        stream = self.open_stream(binding, self.long_request())
        first = await within(self.request_timeout_s, anext(stream), "the first chunk")
        assert isinstance(first, Chunk)
        await within(self.close_timeout_s, stream.aclose(), "aclose() after the first chunk")
        await self.assert_next_request_works(binding)

    @contract("ttt", "stream")
    async def test_cancelled_consumer_releases_the_stream(self, binding: Binding) -> None:
        """Cancelling the task that consumes a stream ends it promptly; the binding still works."""
        got_one = asyncio.Event()

        async def consume() -> None:
            async with aclosing(self.open_stream(binding, self.long_request())) as stream:
                async for _chunk in stream:
                    got_one.set()

        task = asyncio.create_task(consume())
        await within(self.request_timeout_s, got_one.wait(), "the first chunk")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.close_timeout_s)
        assert task in done, f"the stream ignored cancellation for {self.close_timeout_s}s"
        if not task.cancelled():
            task.result()  # it may also have finished; it must not have failed
        await self.assert_next_request_works(binding)

    async def assert_next_request_works(self, binding: Binding) -> None:
        """A short request right after an abandoned stream gives text."""
        params: dict[str, Any] = {"max_tokens": 8}
        result = await within(
            self.request_timeout_s,
            binding.generate(self.make_request(**params)),
            "a request after the abandoned stream",
        )
        assert text_of(result).strip(), "no text from the request after an abandoned stream"
