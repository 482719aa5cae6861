"""The core's contract kit against real OpenAI-compatible servers.

Text and streams: llama.cpp's server with SmolLM2; embeddings: llama.cpp with the tiny
embedding GGUF; images, speech, transcription, embeddings: another lollms-server (echo).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from lollms_openai import OpenAIBinding

from lollms_server.builtin.echo import speak
from lollms_server.testing import (
    EmbeddingsContract,
    ImageContract,
    LifecycleContract,
    ServerContract,
    SpeechContract,
    SpeechSample,
    StreamingContract,
    TextContract,
    TranscriptionContract,
    UnavailableContract,
    free_port,
)

from .conftest import ECHO, SMOL, TINY_EMBED, Remote


class RemoteServerLifecycle(LifecycleContract):
    """Health and model listing; a remote server has no load/unload, so those are not tests."""

    not_applicable: ClassVar[Mapping[str, str]] = {
        "test_load_and_unload_are_idempotent": "a remote server's models are not loaded by us",
        "test_load_unknown_model_is_model_not_found": "a remote server has no load call",
    }


class TestOpenAIOnLlamaCpp(TextContract, StreamingContract, RemoteServerLifecycle, ServerContract):
    """Chat through llama.cpp's server with SmolLM2-135M-Instruct."""

    binding_class = OpenAIBinding
    model = SMOL
    text_parameters: ClassVar[Mapping[str, Any]] = {
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": 32,
    }

    @pytest.fixture
    def binding_settings(self, smol: Remote) -> Mapping[str, Any]:
        """The SmolLM2 server and its key."""
        return smol.settings(capabilities=["ttt", "stream"])


class TestOpenAIEmbeddingsOnLlamaCpp(EmbeddingsContract):
    """Embeddings through llama.cpp's /v1/embeddings."""

    binding_class = OpenAIBinding
    model = TINY_EMBED

    @pytest.fixture
    def binding_settings(self, tiny_embed: Remote) -> Mapping[str, Any]:
        """The tiny embedding server and its key."""
        return tiny_embed.settings(capabilities=["embeddings"])


class TestOpenAIOnLollmsServer(
    ImageContract, SpeechContract, TranscriptionContract, EmbeddingsContract
):
    """Images, speech, transcription and embeddings through another lollms-server."""

    binding_class = OpenAIBinding
    model = ECHO
    deterministic_images = True

    @pytest.fixture
    def binding_settings(self, lollms_backend: Remote) -> Mapping[str, Any]:
        """The lollms-server's /v1 face."""
        return lollms_backend.settings()

    @pytest.fixture
    def speech_sample(self) -> SpeechSample:
        """Echo speech, which the echo binding transcribes back."""
        return SpeechSample(speak("hello world"), "audio/wav", ("hello", "world"))


class TestOpenAIDown(UnavailableContract):
    """Nobody listens at the configured address."""

    binding_class = OpenAIBinding
    model = SMOL

    @pytest.fixture
    def unavailable_settings(self) -> Mapping[str, Any]:
        """A free port on 127.0.0.1."""
        return {"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key": "sk-dead"}
