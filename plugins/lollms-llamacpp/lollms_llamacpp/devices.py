"""GPU placement: what the installed xllamacpp build can use, and how a worker is put on a device.

`python -m lollms_llamacpp.devices` prints llama.cpp's device list (`xllamacpp.get_device_info`)
as one JSON line and exits. The binding asks it in a child process, once per server process, so
lollms-server itself never loads llama.cpp nor initialises CUDA: a CPU wheel lists only `CPU`,
a CUDA wheel on a machine with NVIDIA GPUs lists `CUDA0`, `CUDA1`, ... as GPU devices.

The core names GPUs as NVML does (`cuda:<n>` in PCI bus order). A worker placed on `cuda:<n>`
gets `CUDA_DEVICE_ORDER=PCI_BUS_ID` and `CUDA_VISIBLE_DEVICES=<n>`, so it sees that one GPU (as
its GPU 0) and nothing else; a worker placed in RAM gets 0 GPU layers and no visible CUDA GPU.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

CPU = "cpu"
CUDA_PREFIX = "cuda:"
PROBE_TIMEOUT_S = 60.0
_probed: dict[str, list[dict[str, Any]] | str] = {}  # python executable -> devices, or why not


def placement(
    device: str | None, gpu_placement: bool, n_gpu_layers: int | None
) -> tuple[list[str], dict[str, str]]:
    """Worker arguments and environment that put a model where the core placed it.

    `device` is `device_for(model)`: None when the core did not place the model (the binding
    used on its own), "cpu", or "cuda:<n>". Without `gpu_placement` the core books every model
    in RAM without having chosen it, so "cpu" then leaves llama.cpp to its own choice (the
    `n_gpu_layers` setting); a "cuda:<n>" can only come from a choice or a `[resources]
    devices` pin, and is always followed.
    """
    layers = [] if n_gpu_layers is None else ["--n-gpu-layers", str(n_gpu_layers)]
    if device is None or (device == CPU and not gpu_placement):
        return layers, {}
    if device == CPU:
        return ["--n-gpu-layers", "0"], {"CUDA_VISIBLE_DEVICES": ""}
    index = device.removeprefix(CUDA_PREFIX)
    if not device.startswith(CUDA_PREFIX) or not index.isdigit():
        raise ValueError(f"not a device the core places models on: {device!r}")
    return layers, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": index}


def cuda_devices(devices: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the CUDA GPUs in llama.cpp's device list (`CUDA0`, ...)."""
    return [
        str(d.get("name", ""))
        for d in devices
        if str(d.get("name", "")).upper().startswith("CUDA") and "GPU" in str(d.get("type", ""))
    ]


async def gpu_placement(setting: bool | str, log: logging.Logger) -> bool:
    """The `gpu_placement` setting; "auto": whether xllamacpp lists a CUDA GPU (logged)."""
    if isinstance(setting, bool):
        return setting
    devices = await probe()
    if isinstance(devices, str):
        log.warning("GPU placement off (gpu_placement = auto): %s", devices)
        return False
    gpus = cuda_devices(devices)
    if gpus:
        log.info("xllamacpp sees %s: the core chooses each model's GPU", ", ".join(gpus))
    else:
        shown = ", ".join(str(d.get("name")) for d in devices) or "none"
        log.info("xllamacpp has no CUDA GPU (devices: %s): models run in RAM", shown)
    return bool(gpus)


async def probe(timeout_s: float = PROBE_TIMEOUT_S) -> list[dict[str, Any]] | str:
    """llama.cpp's devices (asked in a child process, cached), or why they could not be read."""
    key = sys.executable
    if key not in _probed:
        _probed[key] = await _run_probe(timeout_s)
    return _probed[key]


async def _run_probe(timeout_s: float) -> list[dict[str, Any]] | str:
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"cannot start {sys.executable}: {exc}"
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout_s)
    except TimeoutError:
        child.kill()
        await child.wait()
        return f"listing llama.cpp's devices took over {timeout_s}s"
    lines = out.decode(errors="replace").strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-1:]
        return f"listing llama.cpp's devices failed (status {child.returncode}): {tail}"
    try:
        devices = json.loads(lines[-1])
    except ValueError:
        return f"listing llama.cpp's devices gave {lines[-1][:200]!r}"
    return [dict(d) for d in devices if isinstance(d, dict)]


def main() -> int:
    """Print xllamacpp's devices as one JSON line."""
    import xllamacpp  # type: ignore[import-untyped, import-not-found, unused-ignore]

    devices = [
        {
            "name": str(device.get("name", "")),
            "type": getattr(device.get("type"), "name", str(device.get("type"))),
            "description": str(device.get("description", "")),
            "memory_total": device.get("memory_total"),
        }
        for device in xllamacpp.get_device_info()
    ]
    print(json.dumps(devices), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
