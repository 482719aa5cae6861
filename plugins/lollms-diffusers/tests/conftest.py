"""Fixtures of the lollms-diffusers tests: tiny random pipelines, built once per session.

Nothing is downloaded: `lollms_diffusers.tiny` builds a Stable Diffusion, an AnimateDiff and an
AudioLDM pipeline from configs (random weights, hand-written tokenizers) and saves them with
`save_pretrained`; the binding then loads them through its normal model-folder path.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import lollms_diffusers.plugin
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lollms_diffusers import DiffusersBinding
from safetensors.numpy import save_file

from lollms_server.app import create_app
from lollms_server.bindings import ChatMessage, GenerationRequest, InputItem
from lollms_server.config import Config, InstanceConfig, prepare_data_dir
from lollms_server.plugins import load_plugins
from lollms_server.testing import backend_unavailable, started_binding

SD = "tiny-sd"
VIDEO = "tiny-animatediff"
AUDIO = "tiny-audioldm"
INSTANCE = "diffusers"
CONTROL = "tiny-control"
UPSCALER = "tiny-upscaler"
SDXL = "tiny-sdxl"
STYLE = "tiny-ip"
SDXL_KEY = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
BUILT: list[str] = []
Client = TestClient[web.Request, web.Application]


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


@asynccontextmanager
async def app_client(
    tiny_models: Path, settings: Mapping[str, Any], data: Path, extra: Mapping[str, Path] = {}
) -> AsyncIterator[Client]:
    """The app with the real plugin module; the tiny models (and `extra`: a path under the
    data dir's `models/` -> what it links to) sit in the data dir's folders."""
    instance = InstanceConfig(
        name=INSTANCE,
        type="diffusers",
        settings={**settings, "models_folders": [], "use_data_dir": True},
    )
    defaults = {kind: INSTANCE for kind in ("tti", "i2i", "ttv", "ttm")}
    config = Config(data_dir=data, bindings={INSTANCE: instance}, defaults=defaults)
    prepare_data_dir(config)
    links = {f"tti/{SD}": tiny_models / SD, f"ttv/{VIDEO}": tiny_models / VIDEO}
    links |= {f"ttm/{AUDIO}": tiny_models / AUDIO, **extra}
    for where, target in links.items():
        (data / "models" / where).symlink_to(target, target_is_directory=target.is_dir())
    plugins = load_plugins({"diffusers": lollms_diffusers.plugin}, entry_points=False)
    app = create_app(config, plugins)
    async with TestClient(TestServer(app, handler_cancellation=True)) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def client(
    tiny_models: Path, settings: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Client]:
    """The app with the real plugin module; the tiny models sit in the data dir's folders."""
    async with app_client(tiny_models, settings, tmp_path / "data") as test_client:
        yield test_client


@pytest.fixture(scope="session")
def adapters_root(
    tiny_models: Path, tiny_lora: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A models folder of adapters (LoRAs, a ControlNet, an IP-Adapter), an upscaler, an SDXL."""
    root = tmp_path_factory.mktemp("adapters")
    (root / "loras").mkdir()
    (root / "loras" / "style.safetensors").symlink_to(tiny_lora)
    xl = {SDXL_KEY: np.zeros((4, 2048), np.float32), "text_encoder_2.lora_A.weight": np.zeros(4)}
    save_file(xl, str(root / "loras" / "xl-style.safetensors"))
    from lollms_diffusers import tiny, tiny_ip_adapter

    tiny.build_controlnet(tiny_models / SD, root / "controlnets" / CONTROL)
    tiny.build_upscaler(root / UPSCALER)
    tiny.build_sdxl(root / SDXL)
    tiny.build_lora(root / SDXL, root / "loras" / "xl-tiny.safetensors")
    tiny_ip_adapter.build_ip_adapter(tiny_models / SD, root / "ipadapters" / STYLE)
    return root
