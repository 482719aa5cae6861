"""The built-in `echo` binding: every generation type, deterministic tiny outputs, no backend.

Models: `echo` repeats the prompt, `think` adds a `<think>` block, `slow` waits `delay_ms`
between tokens, `fail` breaks on purpose (a 503, or an error after the first streamed token).
Speech is a tone per character, so echo's `stt` turns echo's `tts` output back into its text.
With tools offered, `CALL <name> <json>` lines in the prompt make it ask for calls (echo_tools).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

from marshmallow import Schema, fields, validate

from ..binding_context import BindingContext
from ..bindings import (
    CAPABILITIES,
    GENERATION_TYPES,
    Binding,
    Chunk,
    GenerationRequest,
    Health,
    InputItem,
    ModelInfo,
    Output,
    Usage,
)
from ..errors import BackendUnavailable, InvalidRequest, ModelNotFound, UnsupportedMediaType
from ..hookspecs import hookimpl
from ..whole_number import Whole
from . import tiny_media
from .echo_tools import scripted_calls, tool_answer

MODELS = ("echo", "think", "slow", "fail")
TOKEN = re.compile(r"\s*\S+|\s+")
NOTE_SECONDS = 0.1
SAMPLE_RATE = 16000
BASE_HZ = 100.0
STEP_HZ = 20.0
MAX_SPOKEN_CHARS = 200
EMBEDDING_DIM = 16
REVERSE_BLOCK = 1 << 20


class EchoSettings(Schema):
    """Settings of an echo instance."""

    delay_ms = Whole(load_default=50, validate=validate.Range(0, 10_000))
    down = fields.Boolean(load_default=False)
    model_memory_mb = fields.Float(load_default=0.0, validate=validate.Range(0, 1_000_000))
    load_delay_ms = Whole(load_default=0, validate=validate.Range(0, 60_000))
    loaded_memory_mb = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(0, 1_000_000),
        metadata={"help": "what a load reports it took (default: model_memory_mb, the estimate)"},
    )  # fmt: skip


class EchoBinding(Binding):
    """Echoes its input back; the test double that is still a real binding."""

    name = "echo"
    title = "Echo (built-in test binding)"
    description = "Streams the prompt back token by token; tiny images, sounds and video."
    capabilities = CAPABILITIES - {"vision"}
    loads_models = False  # holds no model: `serve --workers N` may run it in every worker
    ConfigSchema = EchoSettings
    parameters_read = frozenset({"max_tokens", "stop", "seed", "width", "height", "tools",
                                 "tool_choice"})  # fmt: skip

    def __init__(
        self, instance_name: str, config: dict[str, Any], context: BindingContext | None = None
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self.loaded: set[str] = set()
        self.load_count = 0

    async def health(self) -> Health:
        """Down when configured `down = true`."""
        if self.config.get("down"):
            return Health("down", "configured down", 0.0)
        return Health("up", "", 0.0)

    async def list_models(self) -> list[ModelInfo]:
        """The four echo models."""
        self._check_up()
        return [
            ModelInfo(
                name=model,
                family="echo",
                size_bytes=0,
                parameters=0,
                context_length=4096,
                capabilities=frozenset(GENERATION_TYPES) | {"stream", "embeddings"},
                memory_bytes=self._memory_bytes(),
                loaded=model in self.loaded,
            )
            for model in MODELS
        ]

    async def load(self, model: str) -> int | None:
        """Mark a model loaded (after `load_delay_ms`); report `model_memory_mb` as its size."""
        self._check_model(model)
        self.load_count += 1
        await asyncio.sleep(self.config.get("load_delay_ms", 0) / 1000)
        self.loaded.add(model)
        taken = self.config.get("loaded_memory_mb")
        return int(taken * 2**20) if taken is not None else self._memory_bytes()

    def _memory_bytes(self) -> int:
        return int(self.config.get("model_memory_mb", 0.0) * 2**20)

    async def unload(self, model: str) -> None:
        """Mark a model unloaded."""
        self._check_model(model)
        self.loaded.discard(model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Text token by token; media as one output chunk."""
        self._check_model(request.model)
        if request.generation_type != "ttt":
            if request.model == "fail":
                raise BackendUnavailable("echo/fail fails on purpose")
            # media work is CPU-bound on inputs of any size: off the event loop
            yield Chunk(output=await asyncio.to_thread(self._media, request))
            return
        prompt_tokens = sum(len(TOKEN.findall(m.content)) for m in request.messages)
        if calls := scripted_calls(request):
            yield Chunk(tool_calls=calls, finish_reason="tool_calls", usage=Usage(prompt_tokens, 1))
            return
        tokens = TOKEN.findall(tool_answer(request) or self._answer(request))
        limit = request.parameters.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        for index, token in enumerate(tokens):
            if request.model == "fail" and index == 1:
                break
            if request.model == "slow":
                await asyncio.sleep(self.config.get("delay_ms", 50) / 1000)
            last = index == len(tokens) - 1
            yield Chunk(
                content=token,
                finish_reason=finish if last else None,
                usage=Usage(prompt_tokens, len(tokens)) if last else None,
            )
        if request.model == "fail":
            raise BackendUnavailable("echo/fail fails on purpose (after its first token)")
        if not tokens:
            yield Chunk(finish_reason=finish, usage=Usage(prompt_tokens, 0))

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """A deterministic unit vector per text, from its SHA-256."""
        self._check_model(model)
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [b - 127.5 for b in digest[:EMBEDDING_DIM]]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vectors.append([v / norm for v in raw])
        return vectors

    async def tokenize(self, text: str, model: str) -> list[int]:
        """UTF-8 bytes as token ids (a long text's in a worker thread)."""
        self._check_model(model)
        if len(text) > 65536:
            return await asyncio.to_thread(lambda: list(text.encode("utf-8")))
        return list(text.encode("utf-8"))

    async def detokenize(self, tokens: list[int], model: str) -> str:
        """Inverse of tokenize; ids outside 0-255 are rejected."""
        self._check_model(model)
        if any(not 0 <= t <= 255 for t in tokens):
            raise InvalidRequest("echo token ids are bytes: 0-255", param="tokens")
        return bytes(tokens).decode("utf-8", errors="replace")

    def _check_up(self) -> None:
        if self.config.get("down"):
            raise BackendUnavailable(f"echo instance {self.instance_name!r} is configured down")

    def _check_model(self, model: str) -> None:
        self._check_up()
        if model not in MODELS:
            raise ModelNotFound(
                f"echo has no model {model!r}; models: {', '.join(MODELS)}", param="model"
            )

    def _answer(self, request: GenerationRequest) -> str:
        prompt = request.prompt
        answer = (
            f"<think>The user said: {prompt}</think>{prompt}"
            if request.model == "think"
            else prompt
        )
        stops = request.parameters.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop and stop in answer:
                answer = answer[: answer.index(stop)]
        return answer

    def _media(self, request: GenerationRequest) -> Output:
        kind = request.generation_type
        prompt = request.prompt
        params = request.parameters
        seed = int(params.get("seed") or zlib.crc32(prompt.encode()))
        width = _clamp(params.get("width"), 8)
        height = _clamp(params.get("height"), 8)
        if kind == "tti":
            data = tiny_media.png(tiny_media.gradient(width, height, seed))
            return Output("image", data=data, mime_type="image/png", metadata={"seed": seed})
        if kind == "i2i":
            source = _first_input(request, "image", "input_image")
            mixed = zlib.crc32(source.data, seed)
            data = tiny_media.png(tiny_media.gradient(width, height, mixed))
            return Output("image", data=data, mime_type="image/png", metadata={"seed": seed})
        if kind == "ttv":
            video = [tiny_media.gradient(width, height, seed + i * 40) for i in range(4)]
            return Output("video", data=tiny_media.apng(video), mime_type="image/apng")
        if kind == "tts":
            return Output("audio", data=speak(prompt), mime_type="audio/wav")
        if kind == "ttm":
            notes = [220.0 * 2 ** ((b % 12) / 12) for b in prompt.encode()[:16] or b"a"]
            return Output("audio", data=tiny_media.tone_wav(notes, 0.05), mime_type="audio/wav")
        if kind == "stt":
            audio = _first_input(request, "audio", "input_audio")
            return Output("text", text=transcribe(audio.data))
        audio = _first_input(request, "audio", "input_audio")
        frames, rate, channels, width_bytes = _wav_or_415(audio.data)
        wav = tiny_media.pcm_wav(
            reverse_frames(frames, channels * width_bytes), rate, channels, width_bytes
        )
        return Output("audio", data=wav, mime_type="audio/wav")


def reverse_frames(frames: bytes, step: int) -> bytes:
    """The frames (of `step` bytes each) in reverse order, by byte lanes at C speed, a block
    at a time (so a worker thread never holds the interpreter long)."""
    usable = len(frames) - len(frames) % step
    backwards = bytearray(usable)
    block = max(1, REVERSE_BLOCK // step) * step
    for start in range(0, usable, block):
        end = min(start + block, usable)
        target = usable - end
        for lane in range(step):
            backwards[target + lane : usable - start : step] = frames[start + lane : end : step][
                ::-1
            ]
    return bytes(backwards)


def speak(text: str) -> bytes:
    """Echo speech: one tone per printable ASCII character."""
    codes = [ord(c) if 32 <= ord(c) < 127 else ord("?") for c in text[:MAX_SPOKEN_CHARS]]
    return tiny_media.tone_wav([BASE_HZ + STEP_HZ * (c - 32) for c in codes], NOTE_SECONDS)


def transcribe(data: bytes) -> str:
    """Inverse of `speak` for 16-bit mono WAV: count zero crossings per note."""
    frames, rate, channels, width = _wav_or_415(data)
    if channels != 1 or width != 2:
        raise UnsupportedMediaType("echo transcribes 16-bit mono WAV only")
    per_note = int(rate * NOTE_SECONDS)
    frames = frames[: per_note * MAX_SPOKEN_CHARS * 2]  # speak() never says more
    samples = struct.unpack(f"<{len(frames) // 2}h", frames[: len(frames) // 2 * 2])
    chars = []
    for start in range(0, len(samples) - per_note + 1, per_note):
        note = samples[start : start + per_note]
        crossings = sum(1 for a, b in itertools.pairwise(note) if (a >= 0) != (b >= 0))
        code = round((crossings / (2 * NOTE_SECONDS) - BASE_HZ) / STEP_HZ) + 32
        chars.append(chr(code) if 32 <= code < 127 else "?")
    return "".join(chars)


def _wav_or_415(data: bytes) -> tuple[bytes, int, int, int]:
    try:
        return tiny_media.read_wav(data)
    except ValueError as exc:
        raise UnsupportedMediaType(f"echo reads WAV audio only: {exc}") from exc


def _first_input(request: GenerationRequest, kind: str, role: str) -> InputItem:
    for item in request.inputs:
        if item.type == kind:
            return item
    raise InvalidRequest(f"{request.generation_type} needs an input of type {kind!r} ({role})")


def _clamp(value: object, default: int) -> int:
    return max(1, min(int(value), 256)) if isinstance(value, int) else default


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The echo binding type."""
    return [EchoBinding]
