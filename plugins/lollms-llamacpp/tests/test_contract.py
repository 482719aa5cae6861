"""The core's contract kit against real llama.cpp processes (SmolLM2 and tiny random GGUFs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lollms_llamacpp import LlamaCppBinding

from lollms_server.testing import (
    EmbeddingsContract,
    LifecycleContract,
    ServerContract,
    StreamingContract,
    TextContract,
    UnavailableContract,
)

from .conftest import SMOL, TINY, TINY_EMBED


class TestLlamaCpp(
    TextContract, StreamingContract, LifecycleContract, ServerContract, EmbeddingsContract
):
    """Text and streams from SmolLM2, embeddings from the tiny embedding model, load/unload."""

    binding_class = LlamaCppBinding
    model = SMOL
    embedding_model = TINY_EMBED
    lifecycle_model = TINY
    text_parameters: ClassVar[Mapping[str, Any]] = {
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": 32,
    }

    @pytest.fixture
    def binding_settings(self, models_dir: Path) -> Mapping[str, Any]:
        """The test models folder; the tiny embedding model in embedding mode."""
        return {
            "models_folders": [str(models_dir)],
            "embedding_models": [TINY_EMBED],
            "n_ctx": 2048,
            "n_parallel": 2,
            "n_threads": 2,
        }


class TestLlamaCppDown(UnavailableContract):
    """An instance whose models folder does not exist."""

    binding_class = LlamaCppBinding
    model = SMOL

    @pytest.fixture
    def unavailable_settings(self, tmp_path: Path) -> Mapping[str, Any]:
        """A models folder that is not there."""
        return {"models_folders": [str(tmp_path / "no-such-folder")]}
