"""Memory budgets per device (RAM and each GPU) and the devices a model may be placed on.

A device's room for one more model is the smaller of two numbers: its budget less what the
loaded models booked there take, and what is free on it now (measured) less its reserve.
Unloading a model there adds its bytes back to both. RAM is measured (psutil) only when a
`ram_reserve` is set; GPUs (NVML, through `gpu.probe`) always are.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

from ..errors import ConfigError
from . import gpu

CPU = "cpu"
ANY_GPU = "gpu"
DEVICE_PIN = re.compile(r"^(cpu|gpu|cuda:\d+)$")
GPU_KEY = re.compile(r"^(cuda:)?(\d+)$")
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)
Size = str | float | int | None
SizeSpec = Size | Mapping[str, Size]  # one size for every GPU, or one per GPU ("cuda:1" = ...)


def is_size(value: object) -> bool:
    """True for a size: bytes (a number), "8GiB"/"512MB", "75%", or none (None, "", 0)."""
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, (int, float)):
        return value >= 0
    if not isinstance(value, str):
        return False
    text = value.strip()
    if text.endswith("%"):
        try:
            return 0 <= float(text[:-1]) <= 100
        except ValueError:
            return False
    return not text or SIZE.match(text) is not None


def is_gpu_sizes(value: object) -> bool:
    """True for a size for every GPU, or a table of sizes keyed "cuda:<n>" (or "*")."""
    if isinstance(value, Mapping):
        return all((k == "*" or GPU_KEY.match(k)) and is_size(v) for k, v in value.items())
    return is_size(value)


def parse_budget(value: Size, total: int, key: str = "resources.ram_budget") -> int | None:
    """Bytes of a size: a number of bytes, "8GiB"/"512MB", or "75%" of `total`; None = none."""
    if not is_size(value):
        raise ConfigError(f"{key}: got {value!r}; allowed: bytes, '8GiB' or '75%'")
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    match = SIZE.match(text)
    assert match is not None  # is_size checked it
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def gpu_name(key: str) -> str:
    """`"1"` or `"cuda:1"` -> `"cuda:1"` (the device names bindings are given)."""
    match = GPU_KEY.match(key.strip())
    if not match:
        raise ConfigError(f"not a GPU: {key!r}; write 'cuda:<index>'")
    return f"cuda:{match.group(2)}"


def mib(size: float) -> str:
    """Bytes as MiB (or GiB past 10 GiB) for messages."""
    if size >= 10 * 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{int(size) // 2**20} MiB"


@dataclass
class Device:
    """One device at the moment of a placement decision."""

    name: str
    total: int
    budget: int | None  # bytes the loaded models may take here; None: no budget
    reserve: int = 0
    free: int | None = None  # measured free bytes now; None: not measured
    booked: int = 0  # bytes the models loaded here take, in the lifecycle's books

    @property
    def room(self) -> float:
        """Bytes one more model may take here now, before anything is unloaded."""
        room = math.inf
        if self.budget is not None:
            room = self.budget - self.booked
        if self.free is not None:
            room = min(room, self.free - self.reserve)
        return room

    def describe(self) -> str:
        """What limits this device, for messages."""
        parts = []
        if self.budget is not None:
            parts.append(f"{mib(self.booked)} of its {mib(self.budget)} budget used")
        if self.free is not None:
            parts.append(f"{mib(self.free)} free, {mib(self.reserve)} kept in reserve")
        room = "no limit" if self.room == math.inf else f"{mib(max(self.room, 0))} room"
        return f"{self.name} ({room}: {', '.join(parts) or 'no budget'})"


def ram_reading() -> tuple[int, int]:
    """Total and available bytes of RAM now."""
    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


class Memory:
    """Budgets and reserves per device, applied to live readings of RAM and GPUs."""

    def __init__(
        self,
        *,
        ram_budget: Size = None,
        ram_reserve: Size = None,
        gpu_budget: SizeSpec = None,
        gpu_reserve: SizeSpec = None,
        read_gpus: Callable[[], gpu.GpuReport] = gpu.probe,
        read_ram: Callable[[], tuple[int, int]] = ram_reading,
    ) -> None:
        self.read_gpus = read_gpus
        self.read_ram = read_ram
        total, _ = read_ram()
        self.ram_total = total
        self.ram_budget = parse_budget(ram_budget, total)
        self.ram_reserve = parse_budget(ram_reserve, total, "resources.ram_reserve") or 0
        self.gpu_budget = _per_gpu(gpu_budget, "resources.gpu_budget")
        self.gpu_reserve = _per_gpu(gpu_reserve, "resources.gpu_reserve")
        self.report: gpu.GpuReport | None = None

    def bounds_nothing(self) -> bool:
        """True when no device has a limit: no RAM budget or reserve, no GPU in the reading."""
        gpus = self.report.devices if self.report is not None else ()
        return self.ram_budget is None and not self.ram_reserve and not gpus

    def ram(self, booked: int) -> Device:
        """RAM now, with `booked` bytes of loaded models in it."""
        if not self.ram_reserve:  # free RAM is not consulted: skip the /proc read (per answer)
            return Device(CPU, self.ram_total, self.ram_budget, 0, None, booked)
        total, available = self.read_ram()
        return Device(CPU, total, self.ram_budget, self.ram_reserve, available, booked)

    async def gpus(self, booked: Mapping[str, int]) -> list[Device]:
        """Every GPU now (read through NVML in a thread), with the bytes booked on each."""
        self.report = await asyncio.to_thread(self.read_gpus)
        return self.gpus_of(self.report, booked)

    def gpus_of(self, report: gpu.GpuReport, booked: Mapping[str, int]) -> list[Device]:
        """Every GPU of a reading, with its budget, reserve and the bytes booked on it."""
        devices = []
        for found in report.devices:
            name = f"cuda:{found.index}"
            total = found.memory_total_bytes
            key = f"resources.gpu_budget ({name})"
            devices.append(
                Device(
                    name,
                    total,
                    parse_budget(_for(self.gpu_budget, name), total, key),
                    parse_budget(_for(self.gpu_reserve, name), total, key) or 0,
                    total - found.memory_used_bytes,
                    booked.get(name, 0),
                )
            )
        return devices

    async def gpu_used(self, device: str) -> int | None:
        """Bytes used on GPU `device` now (NVML), or None for RAM or an unreadable GPU."""
        if device == CPU:
            return None
        report = await asyncio.to_thread(self.read_gpus)
        for found in report.devices:
            if f"cuda:{found.index}" == device:
                return found.memory_used_bytes
        return None

    async def devices_line(self) -> str:
        """Which GPUs models may be placed on, or why there is none (for the log)."""
        gpus = await self.gpus({})
        if gpus:
            return "GPUs for models: " + "; ".join(d.describe() for d in gpus)
        error = self.report.error if self.report else None
        return f"{error or 'no GPU'}: models are placed in RAM"

    def missing(self, pin: str, devices: list[Device]) -> str:
        """Why a model pinned to `pin` has no device here."""
        if not devices:
            reason = self.report.error if self.report and self.report.error else "no GPU"
            return f"it is pinned to {pin} but this machine has {reason}"
        return f"it is pinned to {pin} but this machine's GPUs are " + ", ".join(
            d.name for d in devices
        )


def _per_gpu(spec: SizeSpec, key: str) -> dict[str, Size]:
    """A size for every GPU ("*"), or one per GPU keyed by its device name."""
    if not is_gpu_sizes(spec):
        raise ConfigError(f"{key}: got {spec!r}; allowed: a size, or a table per 'cuda:<n>'")
    if isinstance(spec, Mapping):
        return {gpu_name(k) if k != "*" else "*": v for k, v in spec.items()}
    return {"*": spec}


def _for(spec: Mapping[str, Size], name: str) -> Size:
    return spec.get(name, spec.get("*"))
