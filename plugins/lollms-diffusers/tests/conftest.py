"""Fixtures of the lollms-diffusers tests: tiny random pipelines, built once per session.

Nothing is downloaded: `lollms_diffusers.tiny` builds a Stable Diffusion, an AnimateDiff and an
AudioLDM pipeline from configs (random weights, hand-written tokenizers) and saves them with
`save_pretrained`; the binding then loads them through its normal model-folder path.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lollms_diffusers import DiffusersBinding

from lollms_server.bindings import ChatMessage, GenerationRequest, InputItem
from lollms_server.testing import backend_unavailable, started_binding

SD = "tiny-sd"
VIDEO = "tiny-animatediff"
AUDIO = "tiny-audioldm"
INSTANCE = "diffusers"
BUILT: list[str] = []


@pytest.fixture(scope="session")
def tiny_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the three tiny pipelines (diffusers layout)."""
    try:
        from lollms_diffusers import tiny
    except ImportError as exc:
        backend_unavailable(request.config, f"torch/diffusers/transformers not importable: {exc}")
    root = tmp_path_factory.mktemp("models")
    started = time.perf_counter()
    tiny.build_all(root)
    BUILT.append(f"tiny pipelines built in {time.perf_counter() - started:.2f}s")
    return root


@pytest.fixture(scope="session")
def tiny_lora(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA file for the tiny SD (kept out of the models folder)."""
    from lollms_diffusers import tiny

    return tiny.build_lora(tiny_models / SD, tmp_path_factory.mktemp("loras") / "style.safetensors")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how long building the tiny pipelines took."""
    for line in BUILT:
        terminalreporter.write_line(line)


def tiny_settings(models: Path) -> dict[str, Any]:
    """Settings of a test instance: the tiny models, one torch thread, short generations."""
    return {
        "models_folders": [str(models)],
        "use_data_dir": False,
        "threads": 1,
        "default_steps": 2,
        "default_frames": 4,
        "default_audio_s": 1.0,
    }


@pytest.fixture
def settings(tiny_models: Path) -> dict[str, Any]:
    """Settings of a test instance over the tiny models."""
    return tiny_settings(tiny_models)


@pytest_asyncio.fixture
async def binding(settings: Mapping[str, Any]) -> AsyncIterator[DiffusersBinding]:
    """A started instance over the tiny models."""
    async with started_binding(DiffusersBinding, INSTANCE, settings) as started:
        assert isinstance(started, DiffusersBinding)
        yield started


def make_request(
    kind: str,
    model: str = SD,
    prompt: str = "a red circle",
    inputs: tuple[InputItem, ...] = (),
    **parameters: Any,
) -> GenerationRequest:
    """A request as the core builds it."""
    return GenerationRequest(
        generation_type=kind,
        model=model,
        messages=(ChatMessage("user", prompt),),
        inputs=inputs,
        parameters=parameters,
        request_id=f"test-{kind}",
    )


def image_input(data: bytes, role: str = "input_image") -> InputItem:
    """An image input item."""
    return InputItem("image", role=role, data=data, mime_type="image/png")
