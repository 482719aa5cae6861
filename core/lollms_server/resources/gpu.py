"""GPU probe through NVML (the `nvidia-ml-py` package, module `pynvml`).

`probe()` never raises: a machine without the NVIDIA driver, or an NVML call that fails,
comes back as a `GpuReport` with no devices and the reason in `error` ("no GPU: ...").
`read_devices(nvml)` takes the module as a parameter so that tests can feed it a fake one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU: the die sensor


@dataclass(frozen=True)
class GpuDevice:
    """One GPU at one moment."""

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_percent: int | None = None
    temperature_c: int | None = None

    @property
    def memory_used_percent(self) -> float:
        """Used memory as a percentage of the total (0 when the total is unknown)."""
        if not self.memory_total_bytes:
            return 0.0
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True)
class GpuReport:
    """Every GPU NVML sees, or why there is none."""

    devices: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    error: str | None = None

    @property
    def available(self) -> bool:
        """True when at least one GPU was read."""
        return bool(self.devices)


def probe() -> GpuReport:
    """Read every NVIDIA GPU; "no GPU" (with NVML's reason) when there is none or NVML fails."""
    try:
        import pynvml
    except ImportError as exc:  # the core depends on nvidia-ml-py; a broken install says so
        return GpuReport(error=f"no GPU: nvidia-ml-py is not installed ({exc})")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuReport(error=f"no GPU: {exc}")
    try:
        return read_devices(pynvml)
    except pynvml.NVMLError as exc:
        log.warning("NVML failed while reading GPUs: %s", exc)
        return GpuReport(error=f"no GPU reading: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)


def read_devices(nvml: Any) -> GpuReport:
    """Read every device through an initialised NVML module (or a fake with the same calls)."""
    devices = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        devices.append(
            GpuDevice(
                index=index,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                memory_total_bytes=int(memory.total),
                memory_used_bytes=int(memory.used),
                utilization_percent=_optional(nvml, _utilization, handle),
                temperature_c=_optional(nvml, _temperature, handle),
            )
        )
    driver = _optional(nvml, _driver_version, None)
    return GpuReport(devices=tuple(devices), driver_version=driver)


def _utilization(nvml: Any, handle: Any) -> int:
    return int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def _temperature(nvml: Any, handle: Any) -> int:
    return int(nvml.nvmlDeviceGetTemperature(handle, TEMPERATURE_GPU))


def _driver_version(nvml: Any, _handle: Any) -> str:
    return _text(nvml.nvmlSystemGetDriverVersion())


def _optional(nvml: Any, read: Callable[[Any, Any], T], handle: Any) -> T | None:
    """A reading some GPUs do not support (MIG slices, old boards): None instead of failing."""
    try:
        return read(nvml, handle)
    except nvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
