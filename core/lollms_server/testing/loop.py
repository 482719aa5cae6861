"""`LoopContract`: a binding's call never blocks the event loop that every client shares.

A probe coroutine ticks every few milliseconds while the binding serves a large request; the
longest gap between ticks must stay under `loop_block_budget_s`. A binding that decodes, encodes
or computes on the loop (instead of in a thread, a process or a backend) fails it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeVar

from ..bindings import Binding, GenerationRequest, InputItem
from ..builtin import tiny_media
from .base import ContractBase, contract

T = TypeVar("T")
TICK_S = 0.005
#: prompt characters of the large request, per generation type (ttt: fits a 1k-token context
#: even for a tokenizer that spends a token on each character)
PROMPT_CHARS = {"ttt": 500, "tti": 300, "ttv": 300, "ttm": 300, "tts": 200}


async def worst_loop_gap(work: Awaitable[T]) -> tuple[T, float]:
    """Await `work` while a probe ticks; its result and the longest time the loop was held."""
    loop = asyncio.get_running_loop()
    state = {"last": loop.time(), "worst": 0.0}

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            state["worst"] = max(state["worst"], now - state["last"] - TICK_S)
            state["last"] = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        result = await work
    finally:
        ticker.cancel()
    # work that blocked until its end never let the probe run again: count that stretch too
    held = max(state["worst"], loop.time() - state["last"] - TICK_S)
    return result, held


class LoopContract(ContractBase):
    """Generating never holds the event loop longer than `loop_block_budget_s`."""

    #: generation types to check (default: the server contract's type, else the first one)
    loop_generation_types: ClassVar[tuple[str, ...] | None] = None
    loop_block_budget_s: ClassVar[float] = 1.0
    #: seconds of audio (stt, audio2audio) and image side in pixels (i2i) of the large request
    large_audio_seconds: ClassVar[float] = 20.0
    large_image_side: ClassVar[int] = 256
    #: prompt characters of the large request (default: PROMPT_CHARS per type)
    large_prompt_chars: ClassVar[int | None] = None

    def large_request(self, generation_type: str) -> GenerationRequest:
        """A request as large as the knobs say, for one generation type."""
        chars = self.large_prompt_chars or PROMPT_CHARS.get(generation_type, 200)
        prompt = ("a quiet lake at dawn, " * (chars // 22 + 1))[:chars]
        inputs: tuple[InputItem, ...] = ()
        if generation_type == "i2i":
            side = self.large_image_side
            image = tiny_media.png(tiny_media.gradient(side, side, 7))
            inputs = (InputItem("image", role="input_image", data=image, mime_type="image/png"),)
        elif generation_type in ("stt", "audio2audio"):
            frames = b"\x00\x10\x00\xf0" * int(self.large_audio_seconds * 8000)
            audio = tiny_media.pcm_wav(frames, 16000)
            inputs = (InputItem("audio", role="input_audio", data=audio, mime_type="audio/wav"),)
        extra: Mapping[str, Any] = {"max_tokens": 8} if generation_type == "ttt" else {}
        return self.make_request(generation_type, prompt, inputs=inputs, **extra)

    def loop_types(self) -> tuple[str, ...]:
        """The generation types this contract checks."""
        if self.loop_generation_types is not None:
            declared = self.binding_type().capabilities
            return tuple(t for t in self.loop_generation_types if t in declared)
        chosen = getattr(self, "server_generation_type", None)
        return (chosen or self.first_generation_type(),)

    @contract()
    async def test_generation_does_not_block_the_loop(self, binding: Binding) -> None:
        """A probe keeps ticking while the binding serves a large request of each type."""
        held: dict[str, float] = {}
        for generation_type in self.loop_types():
            request = self.large_request(generation_type)
            _result, held[generation_type] = await asyncio.wait_for(
                worst_loop_gap(binding.generate(request)), self.request_timeout_s
            )
        blocked = {t: round(s, 3) for t, s in held.items() if s >= self.loop_block_budget_s}
        assert not blocked, (
            f"the event loop was held longer than {self.loop_block_budget_s} s (seconds per "
            f"generation type): {blocked}; run CPU-bound work in a thread or a process"
        )
