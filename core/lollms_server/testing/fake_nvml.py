"""A stand-in for the `pynvml` module: the NVML calls `gpu.read_devices` makes, answered from
readings a test sets (and may change between calls), for testing GPU probing and placement."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class FakeNVML:
    """The NVML calls `read_devices` makes, answered from `devices` (one dict per GPU)."""

    NVMLError = FakeNVMLError

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:
        return handle["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        return SimpleNamespace(total=handle["total"], used=handle["used"], free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:
        if handle.get("util") is None:
            raise FakeNVMLError("Not Supported")
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        assert sensor == 0
        if handle.get("temp") is None:
            raise FakeNVMLError("Not Supported")
        return int(handle["temp"])

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"
