"""Contracts of media generation: images (`tti`), speech (`tts`), transcription (`stt`)."""

from __future__ import annotations

import io
import re
import struct
import wave
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from .. import media_types
from ..bindings import Binding, InputItem, Output, Result
from .base import ContractBase, SpeechSample, contract, output_of, text_of
from .fixtures import within

MIME_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/x-flac": "audio/flac",
}
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_TYPES = frozenset({"audio/wav", "audio/mpeg", "audio/ogg", "audio/flac"})


def sniff(data: bytes) -> str | None:
    """The media type the magic bytes of `data` show, restricted to what the kit checks."""
    found = media_types.sniff(data)
    return found if found in IMAGE_TYPES | AUDIO_TYPES else None


def normalized_mime(mime: str) -> str:
    """A mime type without parameters, lower case, with common aliases folded."""
    base = mime.split(";", 1)[0].strip().lower()
    return MIME_ALIASES.get(base, base)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def words_of(text: str) -> list[str]:
    """Lower-case words of a text, punctuation dropped."""
    return re.findall(r"[a-z0-9']+", text.lower())


class ImageContract(ContractBase):
    """`tti`: an image output whose bytes are PNG/JPEG/WEBP matching its mime type."""

    image_prompt: ClassVar[str] = "a red circle on a white background"
    image_parameters: ClassVar[Mapping[str, Any]] = {"width": 64, "height": 64}
    honours_image_size: ClassVar[bool] = True
    deterministic_images: ClassVar[bool] = False
    image_seed: ClassVar[int] = 1234

    async def image(self, binding: Binding, **parameters: Any) -> Output:
        """Generate one image with `image_parameters` plus `parameters`."""
        request = self.make_request(
            "tti", self.image_prompt, **{**self.image_parameters, **parameters}
        )
        result = await within(self.request_timeout_s, binding.generate(request), "tti generate()")
        return output_of(result, "image")

    @contract("tti")
    async def test_image_has_magic_bytes_and_mime(self, binding: Binding) -> None:
        """The image's bytes are a PNG, JPEG or WEBP and its mime type says which."""
        output = await self.image(binding)
        detected = sniff(output.data)
        assert detected in IMAGE_TYPES, f"not a PNG/JPEG/WEBP image: {output.data[:16]!r}"
        assert normalized_mime(output.mime_type) == detected, (
            f"mime_type {output.mime_type!r} but the bytes are {detected}"
        )

    @contract("tti")
    async def test_image_size_is_respected(self, binding: Binding) -> None:
        """A PNG image has the requested width and height."""
        if not self.honours_image_size:
            pytest.skip(f"{type(self).__name__} sets honours_image_size = False")
        expected = (self.image_parameters.get("width"), self.image_parameters.get("height"))
        if None in expected:
            pytest.skip("image_parameters sets no width and height")
        output = await self.image(binding)
        if sniff(output.data) != "image/png":
            pytest.skip("the size check reads PNG headers only")
        assert png_size(output.data) == expected

    @contract("tti")
    async def test_same_seed_same_image(self, binding: Binding) -> None:
        """Same seed, same bytes; another seed, other bytes (for deterministic bindings)."""
        if not self.deterministic_images:
            pytest.skip(f"{type(self).__name__} sets deterministic_images = False")
        first = await self.image(binding, seed=self.image_seed)
        again = await self.image(binding, seed=self.image_seed)
        other = await self.image(binding, seed=self.image_seed + 1)
        assert first.data == again.data, "the same seed gave different images"
        assert first.data != other.data, "a different seed gave the same image"


class SpeechContract(ContractBase):
    """`tts`: audio bytes whose format matches the declared mime type (WAV is parsed)."""

    speech_text: ClassVar[str] = "hello world"
    speech_parameters: ClassVar[Mapping[str, Any]] = {}

    @contract("tts")
    async def test_speech_is_audio_of_its_mime_type(self, binding: Binding) -> None:
        """Audio output; WAV/MP3/OGG/FLAC bytes must match the declared mime, WAV holds sound."""
        request = self.make_request("tts", self.speech_text, **self.speech_parameters)
        result = await within(self.request_timeout_s, binding.generate(request), "tts generate()")
        output = output_of(result, "audio")
        mime = normalized_mime(output.mime_type)
        assert mime.startswith("audio/"), f"mime_type {output.mime_type!r} is not audio/*"
        assert output.data, "empty audio"
        detected = sniff(output.data)
        if mime in AUDIO_TYPES:
            assert detected == mime, f"mime_type {mime!r} but the bytes are {detected}"
        if mime == "audio/wav":
            with wave.open(io.BytesIO(output.data), "rb") as reader:
                assert reader.getnframes() > 0, "a WAV without samples"
                assert reader.getframerate() > 0


class TranscriptionContract(ContractBase):
    """`stt`: a known recording comes back as text containing its words."""

    transcription_min_match: ClassVar[float] = 1.0

    @pytest.fixture
    def speech_sample(self) -> SpeechSample:
        """Audio plus its expected words; a binding with `stt` must override this fixture."""
        pytest.fail(
            f"{type(self).__name__}: override the `speech_sample` fixture with a SpeechSample "
            "(audio bytes, mime type, expected words)",
            pytrace=False,
        )

    @contract("stt")
    async def test_transcript_contains_the_words(
        self, binding: Binding, speech_sample: SpeechSample
    ) -> None:
        """The transcript of `speech_sample` contains (enough of) its expected words."""
        audio = InputItem(
            "audio", role="input_audio", data=speech_sample.audio, mime_type=speech_sample.mime_type
        )
        request = self.make_request("stt", "", inputs=(audio,))
        result: Result = await within(
            self.request_timeout_s, binding.generate(request), "stt generate()"
        )
        heard = set(words_of(text_of(result)))
        expected = [w for word in speech_sample.words for w in words_of(word)]
        assert expected, "speech_sample.words is empty"
        found = [w for w in expected if w in heard]
        assert len(found) >= self.transcription_min_match * len(expected), (
            f"expected words {expected}; transcript {text_of(result)!r}"
        )
