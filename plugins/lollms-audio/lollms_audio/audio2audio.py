"""`audio2audio`: voice conversion (transcribe, then speak again) or format conversion.

- `mode = "revoice"` (the default): the input is transcribed with a whisper model and the
  words are spoken again with a voice. The model names either (the other is the instance
  default); `voice`, `speed`, `language` work as for tts/stt. Prosody is not kept.
- `mode = "convert"`: the input is decoded and written again: `response_format`,
  `sample_rate` (8000-192000) and `channels` (1 or 2) choose the output.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from lollms_server.sdk import GenerationRequest, InputItem, InvalidRequest, Output, check_served

from .catalog import Catalog, Entry
from .formats import Pcm, check_format, decode, encode, require_audio
from .routing import (
    VoiceChoice,
    choose_recognizer,
    choose_voice,
    integer,
    number,
    transcribe_options,
)
from .settings import AudioConfig
from .tts import SpeechOptions

T = TypeVar("T")
MODES = ("revoice", "convert")


class Engines(Protocol):
    """What audio2audio needs of the binding."""

    instance_name: str
    settings: AudioConfig

    def run(self, func: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run blocking work on the binding's worker threads."""

    async def speak(self, choice: VoiceChoice, options: SpeechOptions) -> Pcm:
        """Synthesize with a voice (loading it when needed)."""

    async def recognize(self, entry: Entry, audio: bytes, options: Any) -> dict[str, Any]:
        """Transcribe with a whisper model (loading it when needed)."""


def audio_input(request: GenerationRequest) -> InputItem:
    """The request's audio input: the first `audio` item, else the first `video` (its sound
    track is used), else the first item with bytes; an empty one is returned as it is, for
    `require_audio` to say that it is empty."""
    for kind in ("audio", "video"):
        for item in request.inputs:
            if item.type == kind:
                return item
    for item in request.inputs:
        if item.data:
            return item
    raise InvalidRequest(
        f"{request.generation_type} needs an audio input (input_data type 'audio')",
        param="input_data",
    )


async def audio_to_audio(engines: Engines, request: GenerationRequest, catalog: Catalog) -> Output:
    """Run the request's mode and return the audio output."""
    parameters = request.parameters
    mode = parameters.get("mode") or "revoice"
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}; got {mode!r}", param="mode")
    item = audio_input(request)
    require_audio(item.data, item.mime_type)
    settings = engines.settings
    fmt = check_format(parameters.get("response_format"), settings.default_format)
    if mode == "convert":
        return await _convert(engines, item.data, parameters, fmt)
    model = request.model
    instance = engines.instance_name
    recognizer = choose_recognizer(
        catalog, model if model in catalog.recognizers else "", settings, instance
    )
    choice = choose_voice(
        catalog, model if model in catalog.voices else "", parameters, settings, instance
    )
    for served in (recognizer, choice.entry):  # the model names one; the other is a default
        check_served(instance, model, served.name)
    options = transcribe_options(recognizer, parameters, "", settings)
    heard = await engines.recognize(recognizer, item.data, options)
    text = str(heard["text"]).strip()
    if not text:
        raise InvalidRequest("no speech was heard in the input audio", param="input_data")
    speech = SpeechOptions(
        text=text,
        speed=number(parameters, "speed", 1.0, 0.25, 4.0),
        speaker=choice.speaker,
        espeak_voice=choice.espeak_voice,
        noise_scale=settings.noise_scale,
        noise_w_scale=settings.noise_w_scale,
    )
    pcm = await engines.speak(choice, speech)
    data, mime = await engines.run(encode, pcm, fmt)
    metadata = {
        "mode": "revoice",
        "transcript": text,
        "language": heard["metadata"].get("language"),
        "stt_model": recognizer.name,
        "voice": choice.entry.name,
        "sample_rate": pcm.rate,
        "duration": pcm.duration,
        "format": fmt,
    }
    return Output("audio", data=data, mime_type=mime, metadata=metadata)


async def _convert(
    engines: Engines, data: bytes, parameters: Mapping[str, Any], fmt: str
) -> Output:
    rate = integer(parameters, "sample_rate", 8000, 192_000)
    channels = integer(parameters, "channels", 1, 2)
    pcm = await engines.run(decode, data, rate, channels, engines.settings.max_audio_s)
    if not pcm.data:
        raise InvalidRequest("the input audio holds no samples", param="input_data")
    out, mime = await engines.run(encode, pcm, fmt)
    metadata = {
        "mode": "convert",
        "sample_rate": pcm.rate,
        "channels": pcm.channels,
        "duration": pcm.duration,
        "format": fmt,
    }
    return Output("audio", data=out, mime_type=mime, metadata=metadata)
