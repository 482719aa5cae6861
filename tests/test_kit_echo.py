"""The contract kit held against the built-in echo binding, as a plugin would use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from lollms_server.bindings import GENERATION_TYPES
from lollms_server.builtin.echo import EchoBinding, speak
from lollms_server.testing import (
    ContractSuite,
    SpeechSample,
    TokenizerContract,
    UnavailableContract,
)


class TestEchoContract(ContractSuite, TokenizerContract):
    """Every contract echo claims, against a running echo instance."""

    binding_class = EchoBinding
    model = "echo"
    stream_model = "slow"  # streams with a delay, so abandoning it mid-way means something
    deterministic_text = True
    deterministic_images = True
    loop_generation_types = GENERATION_TYPES  # every type, media minutes long
    large_audio_seconds = 240.0
    large_image_side = 512

    @pytest.fixture
    def binding_settings(self) -> Mapping[str, Any]:
        """A short per-token delay for the `slow` model."""
        return {"delay_ms": 20}

    @pytest.fixture
    def speech_sample(self) -> SpeechSample:
        """Echo's own speech for 'hello world' (echo's stt inverts echo's tts)."""
        return SpeechSample(speak("hello world"), "audio/wav", ("hello", "world"))


class TestEchoDown(UnavailableContract):
    """An echo instance configured `down` behaves like a dead backend."""

    binding_class = EchoBinding
    model = "echo"

    @pytest.fixture
    def unavailable_settings(self) -> Mapping[str, Any]:
        """Echo's switch for playing an unreachable backend."""
        return {"down": True}
