"""GPU placement: the `gpu_placement` setting, the xllamacpp device probe, and the worker's
arguments and environment for the device the core chose (a fake placement: no GPU here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psutil
import pytest
from lollms_llamacpp import LlamaCppBinding, devices
from lollms_llamacpp.devices import cuda_devices, gpu_placement, placement
from lollms_llamacpp.settings import LlamaCppSettings
from lollms_llamacpp.worker import build_params, parse_args
from marshmallow import ValidationError

from lollms_server.testing import within

from .conftest import TINY

CUDA_LIST = [
    {"name": "CUDA0", "type": "GGML_BACKEND_DEVICE_TYPE_GPU", "description": "NVIDIA H100"},
    {"name": "CPU", "type": "GGML_BACKEND_DEVICE_TYPE_CPU", "description": "AMD EPYC"},
]
CPU_LIST = [{"name": "CPU", "type": "GGML_BACKEND_DEVICE_TYPE_CPU", "description": "AMD EPYC"}]
VULKAN_LIST = [{"name": "Vulkan0", "type": "GGML_BACKEND_DEVICE_TYPE_GPU"}, *CPU_LIST]
PCI = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def binding_over(folder: Path, **settings: Any) -> LlamaCppBinding:
    """An instance (not started) over `folder`."""
    loaded = LlamaCppSettings().load({"models_folders": [str(folder)], **settings})
    return LlamaCppBinding("local", loaded)


@pytest.mark.parametrize(
    ("device", "gpu", "layers", "args", "env"),
    [
        (None, True, None, [], {}),  # not placed by the core: llama.cpp decides
        (None, False, 20, ["--n-gpu-layers", "20"], {}),
        ("cpu", False, 20, ["--n-gpu-layers", "20"], {}),  # booked in RAM, not chosen: as set
        ("cpu", True, None, ["--n-gpu-layers", "0"], {"CUDA_VISIBLE_DEVICES": ""}),
        ("cpu", True, 20, ["--n-gpu-layers", "0"], {"CUDA_VISIBLE_DEVICES": ""}),
        ("cuda:1", True, None, [], {**PCI, "CUDA_VISIBLE_DEVICES": "1"}),
        ("cuda:0", True, 33, ["--n-gpu-layers", "33"], {**PCI, "CUDA_VISIBLE_DEVICES": "0"}),
        ("cuda:2", False, None, [], {**PCI, "CUDA_VISIBLE_DEVICES": "2"}),  # a pin: followed
    ],
)
def test_placement_arguments(
    device: str | None, gpu: bool, layers: int | None, args: list[str], env: dict[str, str]
) -> None:
    assert placement(device, gpu, layers) == (args, env)


def test_placement_refuses_devices_the_core_never_gives() -> None:
    for device in ("mps", "cuda:", "cuda:x", "gpu"):
        with pytest.raises(ValueError, match="not a device"):
            placement(device, True, None)


@pytest.mark.parametrize(
    ("device", "setting", "n_gpu_layers", "visible"),
    [("cuda:1", None, -1, "1"), ("cuda:1", 12, 12, "1"), ("cpu", 12, 0, ""), (None, 7, 7, None)],
)
def test_worker_command_follows_device_for(
    tiny_models: Path,
    device: str | None,
    setting: int | None,
    n_gpu_layers: int,
    visible: str | None,
) -> None:
    """With a fake placement set as the lifecycle sets it, the worker's arguments parse into
    the CommonParams llama.cpp gets (-1: llama.cpp fits all it can on the GPU), and its
    environment shows it only the chosen GPU."""
    binding = binding_over(tiny_models, n_gpu_layers=setting)
    binding.gpu_placement = True  # as startup() decides it
    if device is not None:
        binding.placements[TINY] = device  # as the lifecycle sets it before load()
    file = binding.catalog.scan()[TINY]
    params = build_params(parse_args(binding._worker_args(file)))
    assert params.n_gpu_layers == n_gpu_layers
    env = binding._worker_env(TINY)
    assert env.get("CUDA_VISIBLE_DEVICES") == visible
    assert env.get("CUDA_DEVICE_ORDER") == ("PCI_BUS_ID" if visible else None)


async def test_the_worker_gets_its_environment(tiny_models: Path) -> None:
    """A model placed in RAM (fake placement): the real worker starts with no CUDA GPU visible
    and 0 GPU layers, and serves."""
    binding = binding_over(tiny_models, gpu_placement=True, n_ctx=512, n_threads=1)
    await binding.startup()
    assert binding.gpu_placement is True  # the setting wins over the probe
    binding.placements[TINY] = "cpu"
    try:
        await within(60.0, binding.load(TINY), "load")
        process = binding._processes[TINY]
        assert process.pid is not None
        environ = psutil.Process(process.pid).environ()
        assert environ["CUDA_VISIBLE_DEVICES"] == ""
        assert process.args[process.args.index("--n-gpu-layers") + 1] == "0"
        assert (await binding.health()).state == "up"
    finally:
        await binding.shutdown()


def test_the_setting() -> None:
    schema = LlamaCppSettings()
    assert schema.load({}).gpu_placement == "auto"
    assert schema.load({"gpu_placement": True}).gpu_placement is True
    assert schema.load({"gpu_placement": False}).gpu_placement is False
    for bad in ("yes", 1):
        with pytest.raises(ValidationError, match='allowed: "auto", true or false'):
            schema.load({"gpu_placement": bad})
    with pytest.raises(ValidationError, match="null"):
        schema.load({"gpu_placement": None})


def test_cuda_devices_are_told_apart() -> None:
    assert cuda_devices(CUDA_LIST) == ["CUDA0"]
    assert cuda_devices(CPU_LIST) == []
    assert cuda_devices(VULKAN_LIST) == []  # the core places on NVIDIA (NVML) GPUs only


@pytest.mark.parametrize(
    ("probed", "expected", "logged"),
    [
        (CUDA_LIST, True, "xllamacpp sees CUDA0: the core chooses each model's GPU"),
        (CPU_LIST, False, "xllamacpp has no CUDA GPU (devices: CPU): models run in RAM"),
        (VULKAN_LIST, False, "no CUDA GPU (devices: Vulkan0, CPU)"),
        ("listing failed (status 1)", False, "GPU placement off (gpu_placement = auto)"),
    ],
)
async def test_auto_follows_the_probe(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    probed: Any,
    expected: bool,
    logged: str,
) -> None:
    async def fake_probe() -> Any:
        return probed

    monkeypatch.setattr(devices, "probe", fake_probe)
    log = logging.getLogger("lollms_llamacpp.test")
    with caplog.at_level(logging.INFO, logger="lollms_llamacpp.test"):
        assert await gpu_placement("auto", log) is expected
    assert logged in caplog.text
    assert await gpu_placement(True, log) is True and await gpu_placement(False, log) is False


async def test_the_real_probe_on_this_machine(tiny_models: Path) -> None:
    """The installed wheel's device list, read in a child process; auto then decides."""
    found = await devices.probe()
    assert isinstance(found, list), found
    assert any(d["name"] == "CPU" for d in found)
    binding = binding_over(tiny_models)
    await binding.startup()
    assert binding.gpu_placement is bool(cuda_devices(found))
    await binding.shutdown()
