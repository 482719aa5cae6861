"""GPU placement: whether the core chooses each model's GPU (decided without torch), and the
device a model loads on for a placement (fake placements: this machine has no GPU)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lollms_diffusers import DiffusersBinding
from lollms_diffusers import binding as binding_module
from lollms_diffusers.devices import chosen_device, cuda_may_be_available, torch_has_cuda

from lollms_server.resources import gpu
from lollms_server.testing import build_binding, started_binding
from lollms_server.testing.fake_nvml import FakeNVML

from .conftest import INSTANCE, SD

ONE_GPU = FakeNVML([{"name": "Fake GPU", "total": 8 * 2**30, "used": 0}])


@pytest.mark.parametrize(
    ("setting", "placed", "gpu_placement", "expected"),
    [
        ("auto", None, False, "auto"),  # not placed by the core: torch resolves "auto"
        ("auto", None, True, "auto"),
        ("auto", "cpu", False, "auto"),  # booked in RAM by default, not chosen
        ("auto", "cpu", True, "cpu"),  # chosen: RAM
        ("auto", "cuda:1", True, "cuda:1"),
        ("auto", "cuda:1", False, "cuda:1"),  # a [resources] devices pin
        ("cpu", "cuda:1", True, "cpu"),  # a set device wins
        ("cuda:0", "cuda:1", True, "cuda:0"),
        ("mps", "cpu", True, "mps"),
    ],
)
def test_chosen_device(
    setting: str, placed: str | None, gpu_placement: bool, expected: str
) -> None:
    assert chosen_device(setting, placed, gpu_placement) == expected


def test_cuda_may_be_available() -> None:
    def with_gpu() -> gpu.GpuReport:
        return gpu.read_devices(ONE_GPU)

    def no_gpu() -> gpu.GpuReport:
        return gpu.GpuReport(error="no GPU: NVML Shared Library Not Found")

    assert cuda_may_be_available("auto", has_cuda=lambda: True, probe=with_gpu)
    assert not cuda_may_be_available("auto", has_cuda=lambda: False, probe=with_gpu)
    assert not cuda_may_be_available("auto", has_cuda=lambda: True, probe=no_gpu)
    for setting in ("cpu", "cuda", "cuda:1", "mps"):  # a set device: the core does not choose
        assert not cuda_may_be_available(setting, has_cuda=lambda: True, probe=with_gpu)


def test_torch_build_is_read_from_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert torch_has_cuda() is False  # the CPU wheel of the tests has no CUDA library
    fake = tmp_path / "torch"
    (fake / "lib").mkdir(parents=True)
    (fake / "lib" / "libtorch_cpu.so").touch()
    spec = SimpleNamespace(submodule_search_locations=[str(fake)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    assert torch_has_cuda() is False
    (fake / "lib" / "libtorch_cuda.so").touch()
    assert torch_has_cuda() is True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert torch_has_cuda() is False


async def test_startup_decides_gpu_placement(
    settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with started_binding(DiffusersBinding, INSTANCE, settings) as plain:
        assert plain.gpu_placement is (gpu.probe().available and torch_has_cuda())
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # restored when the test ends
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    asked: list[str] = []

    def may(setting: str) -> bool:
        asked.append(setting)
        return True

    monkeypatch.setattr(binding_module, "cuda_may_be_available", may)
    async with started_binding(DiffusersBinding, INSTANCE, settings) as placing:
        assert placing.gpu_placement is True and asked == ["auto"]
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # torch's cuda:<n> = NVML's


async def test_a_model_loads_where_the_core_placed_it(
    settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifecycle sets the placement before load(); the pipeline gets that device."""
    from lollms_diffusers import pipelines

    real_load = pipelines.load
    seen: list[str] = []

    def load(entry: Any, settings: Any) -> Any:
        seen.append(settings.device)
        if settings.device.startswith("cuda"):  # no GPU here: stand in for the pipeline
            return SimpleNamespace(entry=entry, pipe=None, device=settings.device,
                                   dtype="fp16", bytes_used=1)  # fmt: skip
        return real_load(entry, settings)

    monkeypatch.setattr(pipelines, "load", load)
    async with started_binding(DiffusersBinding, INSTANCE, settings) as binding:
        assert isinstance(binding, DiffusersBinding)
        binding.gpu_placement = True  # as startup() decides with a CUDA torch and a GPU
        binding.placements[SD] = "cuda:1"
        assert binding.load_device(SD) == "cuda:1"
        assert await binding.load(SD) == 1
        with binding._lock:
            binding._loaded.clear()  # the stand-in holds nothing to free
        binding.placements[SD] = "cpu"  # the core chose RAM this time
        assert (await binding.load(SD) or 0) > 1_000_000
        assert binding._loaded[SD].device == "cpu" and binding._loaded[SD].dtype == "fp32"
    assert seen == ["cuda:1", "cpu"]


def test_a_set_device_wins_over_the_placement(settings: dict[str, Any]) -> None:
    pinned = build_binding(DiffusersBinding, INSTANCE, {**settings, "device": "cpu"})
    pinned.placements[SD] = "cuda:0"
    pinned.gpu_placement = True
    assert isinstance(pinned, DiffusersBinding) and pinned.load_device(SD) == "cpu"
    unplaced = build_binding(DiffusersBinding, INSTANCE, settings)
    assert isinstance(unplaced, DiffusersBinding) and unplaced.load_device(SD) == "auto"
