"""The core's contract kit on real speech: Piper speaks, faster-whisper listens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from lollms_audio import AudioBinding

from lollms_server.testing import (
    LifecycleContract,
    ServerContract,
    SpeechContract,
    SpeechSample,
    TranscriptionContract,
    UnavailableContract,
)

from .conftest import SENTENCE, VOICE, WHISPER


class TestAudio(SpeechContract, TranscriptionContract, LifecycleContract, ServerContract):
    """tts with the packaged Piper voice, stt with the packaged whisper tiny.en."""

    binding_class = AudioBinding
    model = VOICE
    speech_model = VOICE
    transcription_model = WHISPER
    lifecycle_model = WHISPER
    speech_text = "hello world"

    @pytest.fixture
    def binding_settings(
        self, model_folders: dict[str, list[str]], packaged: None
    ) -> Mapping[str, Any]:
        """Only the packaged models (and espeak-ng when installed)."""
        return model_folders

    @pytest.fixture
    def speech_sample(self, say: Callable[[str], bytes]) -> SpeechSample:
        """A sentence spoken by Piper."""
        return SpeechSample(say(SENTENCE), "audio/wav", tuple(SENTENCE.split()))


class TestAudioVoiceLifecycle(LifecycleContract):
    """Load/unload of a Piper voice (the class above cycles the whisper model)."""

    binding_class = AudioBinding
    model = VOICE

    @pytest.fixture
    def binding_settings(
        self, model_folders: dict[str, list[str]], packaged: None
    ) -> Mapping[str, Any]:
        """Only the packaged models."""
        return model_folders


class TestAudioWithoutModels(UnavailableContract):
    """No voice, no whisper model, no espeak-ng: down, and every call says so with a 503."""

    binding_class = AudioBinding
    model = VOICE

    @pytest.fixture
    def unavailable_settings(self, model_folders: dict[str, list[str]]) -> Mapping[str, Any]:
        """Empty folders, packaged models and espeak-ng turned off."""
        return {**model_folders, "packaged_models": False, "espeak": False}
