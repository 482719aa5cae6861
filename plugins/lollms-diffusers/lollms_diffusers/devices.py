"""Where a model runs: the `device` setting, or with "auto" the device the core placed it on.

Whether the core should choose a GPU per model (`gpu_placement`) is decided without importing
torch (the server must start without it): the `device` setting is "auto", the installed torch
is a CUDA build (its CUDA library is there: `torch/lib/*torch_cuda*`, found through
`importlib.util.find_spec`, which imports nothing), and NVML (`nvidia-ml-py`, the core's GPU
probe) sees at least one NVIDIA GPU.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from lollms_server.sdk import GpuReport, probe_gpus

AUTO = "auto"
CPU = "cpu"


def chosen_device(setting: str, placed: str | None, gpu_placement: bool) -> str:
    """The device a model loads on: a set `device` wins; with "auto", where the core placed it.

    The core books every model of a binding that does not place on GPUs in RAM without having
    chosen: "cpu" then counts only with `gpu_placement`, and "auto" stays for torch to resolve
    (cuda, else mps, else cpu). A "cuda:<n>" comes from a choice or a `[resources] devices`
    pin, and is always followed.
    """
    if setting != AUTO or placed is None:
        return setting
    if placed == CPU and not gpu_placement:
        return AUTO
    return placed


def torch_has_cuda() -> bool:
    """True when the installed torch is a CUDA build (torch itself is not imported)."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(
        any((Path(folder) / "lib").glob("*torch_cuda*"))
        for folder in spec.submodule_search_locations
    )


def cuda_may_be_available(
    setting: str,
    *,
    has_cuda: Callable[[], bool] = torch_has_cuda,
    probe: Callable[[], GpuReport] = probe_gpus,
) -> bool:
    """Whether the core should place this instance's models on GPUs (blocking: NVML is read)."""
    return setting == AUTO and has_cuda() and probe().available
