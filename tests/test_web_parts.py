"""The pieces behind the pages: GPU probe, request counters, stream registry, SSE framing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.httpkit.error_middleware import face_of
from lollms_server.resources import gpu
from lollms_server.security.principal import Principal, reset_current, set_current
from lollms_server.testing.fake_nvml import FakeNVML
from lollms_server.web import filters
from lollms_server.web.activity import snapshot
from lollms_server.web.streams import PageStream, StreamRegistry, sse_message


def test_no_gpu_is_reported_cleanly_on_this_machine() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    report = gpu.probe()
    assert report.devices == () and not report.available
    assert report.error is not None and report.error.startswith("no GPU")


def test_gpu_readings_are_parsed() -> None:
    fake = FakeNVML(
        [
            {"name": b"NVIDIA H100 80GB HBM3", "total": 80 * 2**30, "used": 20 * 2**30,
             "util": 37, "temp": 41},
            {"name": "MIG 1g.10gb", "total": 10 * 2**30, "used": 0, "util": None, "temp": 40},
        ]
    )  # fmt: skip
    report = gpu.read_devices(fake)
    assert report.available and report.driver_version == "550.54.15"
    first, second = report.devices
    assert first.name == "NVIDIA H100 80GB HBM3" and first.utilization_percent == 37
    assert first.memory_used_percent == 25.0 and first.temperature_c == 41
    assert second.utilization_percent is None  # not supported on a MIG slice: no failure
    assert second.memory_used_percent == 0.0


def test_gpu_probe_reports_an_nvml_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def broken_count() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", broken_count)
    report = gpu.probe()
    assert report.devices == () and report.error and "no GPU reading" in report.error


async def test_dashboard_shows_gpu_readings(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeNVML(
        [{"name": "Test GPU", "total": 8 * 2**30, "used": 2**30, "util": 5, "temp": 50}]
    )
    monkeypatch.setattr(gpu, "probe", lambda: gpu.read_devices(fake))
    html = await (await client.get("/", headers={"HX-Request": "true"})).text()
    assert "<td>Test GPU</td>" in html and "1.0 GiB / 8.0 GiB" in html and "50 °C" in html
    assert "no GPU" not in html


@pytest.mark.parametrize(
    ("path", "face"),
    [
        ("/v1/chat/completions", "openai"),
        ("/api/v1/generate", "lollms"),
        ("/api/chat", "ollama"),
        ("/models", "web"),
        ("/metrics", "lollms"),
        ("/-/plugin/x", "lollms"),
    ],
)
def test_faces(path: str, face: str) -> None:
    assert face_of(path) == face


async def test_request_counters(client: TestClient[Any, Any]) -> None:
    await client.get("/static/style.css")
    await client.get("/api/v1/health")
    await client.get("/api/v1/nothing-here")
    await client.post("/api/v1/generate", json={"input_data": [{"type": "text", "data": "x"}]})
    await client.post("/v1/chat/completions", json={"model": "echo/echo", "messages": []})
    numbers = snapshot(client.app)
    assert numbers["requests"] == 4  # static files are not counted; the 404 is "unmatched"
    assert numbers["errors"] == 2 and numbers["generations"] == 1
    faces = {f["face"]: f["requests"] for f in numbers["faces"]}
    assert faces == {"lollms": 2, "openai": 1, "unmatched": 1}
    assert numbers["generations_in_flight"] == 0 and numbers["queue_depth"] == 0


def test_stream_registry_claims_once_and_expires() -> None:
    registry = StreamRegistry(ttl_s=10, max_pending=3)
    prepared: Any = SimpleNamespace(request=SimpleNamespace(messages=(), inputs=()))
    first = registry.add(prepared, "chat")
    assert registry.claim(first.id) is first
    assert registry.claim(first.id) is None  # a reconnect never starts it again
    assert registry.get(first.id) is first and registry.running == 1
    registry.finish(first.id)
    assert registry.get(first.id) is None
    old = registry.add(prepared, "chat")
    old.created -= 11
    assert registry.claim(old.id) is None  # expired unclaimed
    kept = [registry.add(prepared, "chat") for _ in range(5)]
    assert len(registry.entries) == 3 and all(e.id in registry.entries for e in kept[-3:])
    assert len({e.id for e in kept}) == 5 and all(len(e.id) >= 20 for e in kept)


def test_stream_registry_caps_each_caller() -> None:
    """A caller's excess evicts its own oldest entries; at the global bound, the caller holding
    the most loses its oldest. Another caller's entry waits for its browser meanwhile."""
    registry = StreamRegistry(ttl_s=10, max_pending=10, per_caller=4)
    prepared: Any = SimpleNamespace(request=SimpleNamespace(messages=(), inputs=()))

    def add_as(key_id: str | None) -> PageStream:
        principal = Principal(role="user", key_id=key_id, local=key_id is None)
        token = set_current(principal)
        try:
            return registry.add(prepared, "chat")
        finally:
            reset_current(token)

    patient = add_as("aaaaaaaaaaaa")
    local = add_as(None)
    flood = [add_as("bbbbbbbbbbbb") for _ in range(300)]
    assert patient.id in registry.entries and local.id in registry.entries
    assert [e for e in registry.entries.values() if e.owner == "bbbbbbbbbbbb"] == flood[-4:]
    others = [add_as(f"{n:012d}") for n in range(6)]
    assert len(registry.entries) == 10 and all(e.id in registry.entries for e in others)
    assert patient.id in registry.entries and local.id in registry.entries
    assert [e for e in registry.entries.values() if e.owner == "bbbbbbbbbbbb"] == flood[-2:]


def test_sse_message_framing() -> None:
    assert sse_message("token", "a") == b"event: token\ndata: a\n\n"
    assert (
        sse_message("token", "a\nb\r\nc\rd")
        == b"event: token\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert sse_message("token", "\n") == b"event: token\ndata: \ndata: \n\n"
    assert sse_message("done", "") == b"event: done\ndata: \n\n"


def test_filters() -> None:
    assert filters.human_bytes(None) == "" and filters.human_bytes(512) == "512 B"
    assert filters.human_bytes(1536) == "1.5 KiB" and filters.human_bytes(3 * 2**30) == "3.0 GiB"
    assert filters.human_count(135_000_000) == "135M" and filters.human_count(1_500) == "1.5K"
    assert filters.human_count(None) == "" and filters.human_count(7) == "7"
    assert filters.human_duration(5) == "5s" and filters.human_duration(3725) == "1h 02m 05s"
    assert filters.human_duration(90061) == "1d 01h 01m"
    assert filters.timestamp(0) == "1970-01-01 00:00:00"
    assert filters.data_url(b"\x00", "image/png") == "data:image/png;base64,AA=="
    assert filters.extension("audio/mpeg") == "mp3" and filters.extension("image/png") == "png"
