"""The core's contract kit for the `lollms` binding against real node processes.

The echo node covers every generation type, embeddings, tokenizing and load/unload (the
binding holds an admin key of the node); a llama.cpp node serves SmolLM2-135M-Instruct for text
and streams from a real model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from lollms_remote import LollmsRemoteBinding

from lollms_server.builtin.echo import speak
from lollms_server.testing import (
    ContractSuite,
    SpeechSample,
    StreamingContract,
    TextContract,
    UnavailableContract,
    free_port,
)

from .conftest import SMOL_MODEL, FixedNode, Node


class TestRemoteEchoNode(ContractSuite):
    """Every contract through a node serving the echo binding."""

    binding_class = LollmsRemoteBinding
    model = "echo/echo"
    stream_model = "echo/slow"
    deterministic_images = True
    deterministic_text = True

    @pytest.fixture
    def binding_settings(self, echo_node: Node) -> Mapping[str, Any]:
        """The node and its admin key."""
        return echo_node.settings()

    @pytest.fixture
    def speech_sample(self) -> SpeechSample:
        """Echo speech, which the echo binding transcribes back."""
        return SpeechSample(speak("hello world"), "audio/wav", ("hello", "world"))


class TestRemoteSmolLM2Node(TextContract, StreamingContract):
    """Text and streams from a real model: SmolLM2 through llama.cpp on the node."""

    binding_class = LollmsRemoteBinding
    model = SMOL_MODEL
    text_parameters: ClassVar[Mapping[str, Any]] = {
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": 32,
    }

    @pytest.fixture
    def binding_settings(self, smol_nodes: tuple[FixedNode, FixedNode]) -> Mapping[str, Any]:
        """The first SmolLM2 node and its admin key."""
        return {"base_url": smol_nodes[0].url, "api_key": smol_nodes[0].key}


class TestRemoteNodeDown(UnavailableContract):
    """Nobody listens at the node's address."""

    binding_class = LollmsRemoteBinding
    model = "echo/echo"

    @pytest.fixture
    def unavailable_settings(self) -> Mapping[str, Any]:
        """A free port on 127.0.0.1."""
        return {
            "base_url": f"http://127.0.0.1:{free_port()}",
            "api_key": "lollms_dead",
            "retries": 0,
        }
