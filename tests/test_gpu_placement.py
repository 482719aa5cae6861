"""Memory budgets per device and GPU placement: two fake GPUs read through the real NVML reader
(`gpu.read_devices` over a fake module whose used memory follows what the binding loaded), and
the real no-GPU path of this machine (NVML cannot start: RAM only, no crash, "no GPU" shown)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.builtin.echo import EchoBinding
from lollms_server.errors import ConfigError
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import LIFECYCLE, REGISTRY
from lollms_server.plugins import load_plugins
from lollms_server.resources import gpu
from lollms_server.resources.lifecycle import Lifecycle
from lollms_server.resources.placement import parse_budget
from lollms_server.testing.fake_nvml import FakeNVML

Client = TestClient[Any, Any]
GiB = 2**30


class GpuEcho(EchoBinding):
    """Echo whose models take `model_memory_mb` on the device the core chose for them."""

    name = "gpuecho"
    gpu_placement = True
    nvml: FakeNVML | None = None

    async def load(self, model: str) -> int | None:
        """Take the model's memory on its device; on a GPU, report only a small RSS."""
        size = await super().load(model) or 0
        return 2**20 if self._take(model, size) else size

    async def unload(self, model: str) -> None:
        """Give the model's GPU memory back."""
        if model in self.loaded:
            self._take(model, -self._memory_bytes())
        await super().unload(model)

    def _take(self, model: str, size: int) -> bool:
        device = self.device_for(model) or "cpu"
        if self.nvml is None or not device.startswith("cuda:"):
            return False
        self.nvml.devices[int(device[5:])]["used"] += size
        return True


class GpuPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[EchoBinding]]:
        return [GpuEcho]


def two_gpus(used_gib: tuple[float, float], total_gib: float = 8) -> FakeNVML:
    return FakeNVML(
        [
            {"name": f"Fake GPU {i}", "total": int(total_gib * GiB), "used": int(used * GiB)}
            for i, used in enumerate(used_gib)
        ]
    )


async def start(
    make_client: Any, make_config: Any, nvml: FakeNVML | None, **resources: Any
) -> Client:
    """An app with `gpu` (3 GiB models) and `small` (1 GiB) instances over the fake GPUs."""
    config = make_config(
        {
            "bindings": {
                "gpu": {"type": "gpuecho", "model_memory_mb": 3072, "delay_ms": 200},
                "small": {"type": "gpuecho", "model_memory_mb": 1024},
            },
            "defaults": {"ttt": "gpu"},
            "resources": {"gpu_reserve": "512MiB", **resources},
        }
    )
    client: Client = await make_client(config, plugins=load_plugins(extra={"gpu": GpuPlugin()}))
    if nvml is not None:
        client.server.app[LIFECYCLE].memory.read_gpus = lambda: gpu.read_devices(nvml)
        for binding in client.server.app[REGISTRY]:
            binding.nvml = nvml  # type: ignore[attr-defined]
    return client


def where(client: Client) -> dict[str, str]:
    """`instance/model` -> device of every loaded model."""
    return {m.ref: m.device for m in client.server.app[LIFECYCLE].loaded.values()}


async def generate(client: Client, model: str, binding: str = "gpu") -> Any:
    body = {"input_data": [{"type": "text", "data": "hi"}], "binding_name": binding}
    return await client.post("/api/v1/generate", json={**body, "model_name": model})


@pytest.mark.parametrize(("used", "chosen"), [((1, 4), "cuda:0"), ((4, 1), "cuda:1")])
async def test_a_model_goes_to_the_gpu_with_most_room(
    make_client: Any, make_config: Any, used: tuple[float, float], chosen: str
) -> None:
    nvml = two_gpus(used)
    client = await start(make_client, make_config, nvml)
    assert (await generate(client, "echo")).status == 200
    binding = client.server.app[REGISTRY].get("gpu")
    assert binding.device_for("echo") == chosen and where(client) == {"gpu/echo": chosen}
    entry = next(iter(client.server.app[LIFECYCLE].loaded.values()))
    assert entry.bytes == 3 * GiB  # what NVML saw the load take, not the 1 MiB RSS reported


async def test_the_dashboard_shows_each_model_s_device_and_memory_per_device(
    make_client: Any, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = two_gpus((4, 1))
    monkeypatch.setattr(gpu, "probe", lambda: gpu.read_devices(nvml))  # the page's GPU reading
    client = await start(
        make_client, make_config, nvml, gpu_budget="6GiB", devices={"small": "cpu"}
    )
    assert (await generate(client, "echo")).status == 200  # to cuda:1, the GPU with most room
    assert (await generate(client, "echo", "small")).status == 200  # pinned to RAM
    html = await (await client.get("/", headers={"HX-Request": "true"})).text()
    assert re.search(r'<td>gpu/echo</td><td>[^<]*</td><td class="device">cuda:1</td>', html)
    assert re.search(r'<td>small/echo</td><td>[^<]*</td><td class="device">cpu</td>', html)
    rows = {
        name: re.sub(r"<meter.*?</meter>\s*", "", cells)
        for name, cells in re.findall(r'<td class="device">([^<]+)</td>(.*?)</tr>', html, re.S)
        if "num" in cells
    }
    cells = (
        r'<td class="num">{}</td>\s*<td>{}</td>\s*<td class="num">{}</td>\s*<td class="num">{}</td>'
    )
    # cuda:1: 3 GiB booked of its 6 GiB budget; 4 GiB free less 0.5 GiB reserve: 3 GiB room
    assert re.search(cells.format(1, "3.0 GiB", "6.0 GiB", "3.0 GiB"), rows["cuda:1"])
    assert re.search(cells.format(0, "0 B", "6.0 GiB", "3.5 GiB"), rows["cuda:0"])
    assert re.search(cells.format(1, "1.0 GiB", "none", "no limit"), rows["cpu"])


async def test_eviction_happens_on_the_device_that_needs_room(
    make_client: Any, make_config: Any
) -> None:
    nvml = two_gpus((5, 1))  # room for models: cuda:0 2.5 GiB, cuda:1 6.5 GiB
    client = await start(make_client, make_config, nvml, devices={"small": "cuda:0"})
    lifecycle: Lifecycle = client.server.app[LIFECYCLE]
    assert (await generate(client, "echo", "small")).status == 200  # oldest, on cuda:0
    assert (await generate(client, "echo")).status == 200
    assert (await generate(client, "think")).status == 200
    assert where(client) == {"small/echo": "cuda:0", "gpu/echo": "cuda:1", "gpu/think": "cuda:1"}
    assert (await generate(client, "slow")).status == 200  # fits nowhere without unloading
    assert where(client) == {"small/echo": "cuda:0", "gpu/think": "cuda:1", "gpu/slow": "cuda:1"}
    assert lifecycle.evictions == 1  # gpu/echo went; small/echo, older but elsewhere, stayed
    assert nvml.devices[1]["used"] == 7 * GiB and nvml.devices[0]["used"] == 6 * GiB
    assert lifecycle.used_by_device() == {"cuda:0": GiB, "cuda:1": 6 * GiB}


async def test_per_gpu_budgets(make_client: Any, make_config: Any) -> None:
    nvml = two_gpus((4, 0))
    budgets = {"cuda:1": "2GiB", "0": "50%"}  # cuda:1 is emptier but its budget is too small
    client = await start(make_client, make_config, nvml, gpu_budget=budgets)
    assert (await generate(client, "echo")).status == 200
    assert where(client) == {"gpu/echo": "cuda:0"}
    response = await generate(client, "think")  # cuda:0's budget (4 GiB) holds one; not cpu
    assert response.status == 200 and where(client) == {"gpu/think": "cuda:0"}


async def test_device_pins(make_client: Any, make_config: Any) -> None:
    nvml = two_gpus((4, 0))
    client = await start(
        make_client, make_config, nvml, devices={"gpu/echo": "cuda:0", "gpu/think": "cpu"}
    )
    for model in ("echo", "think", "slow"):
        assert (await generate(client, model)).status == 200
    assert where(client) == {"gpu/echo": "cuda:0", "gpu/think": "cpu", "gpu/slow": "cuda:1"}
    assert client.server.app[REGISTRY].get("gpu").device_for("think") == "cpu"


async def test_a_pinned_device_that_is_full_gives_a_503_naming_what_is_there(
    make_client: Any, make_config: Any
) -> None:
    nvml = two_gpus((3, 0))
    client = await start(
        make_client, make_config, nvml, devices={"gpu": "cuda:0"}, pinned=["gpu/echo"]
    )
    assert (await generate(client, "echo")).status == 200
    refused = await generate(client, "think")
    error = (await refused.json())["error"]
    assert refused.status == 503 and error["type"] == "overloaded"
    assert refused.headers["Retry-After"] == "5"
    message = error["message"]
    assert message.startswith(
        "gpu/think (3072 MiB) does not fit: cuda:0 (1536 MiB room: 2048 MiB free, 512 MiB kept "
        "in reserve), loaded there: gpu/echo (3072 MiB, pinned)"
    )
    assert "cuda:1" not in message  # pinned to cuda:0: the emptier cuda:1 is not an option
    assert where(client) == {"gpu/echo": "cuda:0"}


async def test_a_pin_to_a_gpu_that_does_not_exist(make_client: Any, make_config: Any) -> None:
    client = await start(make_client, make_config, two_gpus((0, 0)), devices={"gpu": "cuda:7"})
    refused = await generate(client, "echo")
    error = (await refused.json())["error"]
    assert refused.status == 503 and error["type"] == "backend_unavailable"
    assert "pinned to cuda:7 but this machine's GPUs are cuda:0, cuda:1" in error["message"]


async def test_full_gpus_fall_back_to_ram_then_503(make_client: Any, make_config: Any) -> None:
    nvml = two_gpus((0, 0), total_gib=4)  # 3.5 GiB of room each: one 3 GiB model per GPU
    client = await start(  # a load waits this long for busy models (slow) to finish
        make_client, make_config, nvml, ram_budget="3.5GiB", pinned=["gpu/echo", "gpu/think"],
        queue_timeout_s=0.05,
    )  # fmt: skip
    busy = await client.post(
        "/api/v1/generate",
        json={"input_data": [{"type": "text", "data": "a b c d e f g h"}], "stream": True,
              "binding_name": "gpu", "model_name": "slow"},
    )  # fmt: skip
    await busy.content.readline()  # generating: busy until the stream ends
    for model in ("echo", "think"):
        assert (await generate(client, model)).status == 200
    assert where(client) == {"gpu/slow": "cuda:0", "gpu/echo": "cuda:1", "gpu/think": "cpu"}
    refused = await generate(client, "echo", "small")  # 1 GiB: both GPUs and RAM are taken
    message = (await refused.json())["error"]["message"]
    assert refused.status == 503
    assert "cuda:0 (" in message and "cuda:1 (" in message and "cpu (" in message
    assert "loaded there: gpu/slow (3072 MiB, busy)" in message
    assert "loaded there: gpu/echo (3072 MiB, pinned)" in message
    assert "cpu (512 MiB room: 3072 MiB of its 3584 MiB budget used)" in message
    await busy.read()


async def test_real_no_gpu_path(
    make_client: Any, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    report = gpu.probe()
    if report.available:
        pytest.skip("this machine has a GPU")
    assert report.error is not None and report.error.startswith("no GPU")
    client = await start(make_client, make_config, None)
    assert (await generate(client, "echo")).status == 200  # a GPU-placing binding: RAM
    assert where(client) == {"gpu/echo": "cpu"}
    assert client.server.app[REGISTRY].get("gpu").device_for("echo") == "cpu"
    with caplog.at_level(logging.INFO, logger="lollms_server.resources.lifecycle"):
        await client.server.app[LIFECYCLE].log_devices()
    assert "no GPU" in caplog.text and "models are placed in RAM" in caplog.text
    html = await (await client.get("/", headers={"HX-Request": "true"})).text()
    assert "no GPU" in html
    metrics = await (await client.get("/metrics")).text()
    assert 'lollms_device_models_bytes{device="cpu"} 3.221225472e+09' in metrics
    assert 'lollms_model_memory_bytes{device="cpu",instance="gpu",model="echo"}' in metrics


async def test_a_gpu_pin_without_a_gpu_is_a_clear_503(make_client: Any, make_config: Any) -> None:
    if gpu.probe().available:
        pytest.skip("this machine has a GPU")
    client = await start(make_client, make_config, None, devices={"gpu/echo": "gpu"})
    refused = await generate(client, "echo")
    message = (await refused.json())["error"]["message"]
    assert refused.status == 503
    assert message.startswith("gpu/echo cannot be loaded: it is pinned to gpu but this machine")
    assert "has no GPU: " in message
    assert (await generate(client, "think")).status == 200  # unpinned models still load


async def test_ram_reserve_is_never_used(make_client: Any, make_config: Any) -> None:
    client = await start(make_client, make_config, None, ram_reserve="100%")
    refused = await generate(client, "think", "small")
    message = (await refused.json())["error"]["message"]
    assert refused.status == 503 and "cpu (0 MiB room:" in message
    assert "kept in reserve" in message
    roomy = await start(make_client, make_config, None, ram_reserve="1MiB")
    assert (await generate(roomy, "think", "small")).status == 200


async def test_the_free_memory_header_names_the_roomiest_bounded_device(
    make_client: Any, make_config: Any
) -> None:
    """Nothing bounds a model (no budget, no reserve, no GPU): no X-Lollms-Free-Memory. A GPU
    reading, or a RAM budget alone, bounds it: the header and the status page agree on it."""

    async def free(client: Client) -> tuple[str | None, Any]:
        answer = await generate(client, "echo")
        assert answer.status == 200
        status = await (await client.get("/api/v1/status")).json()
        return answer.headers.get("X-Lollms-Free-Memory"), status["free_memory_bytes"]

    unbounded = await start(make_client, make_config, None)
    unbounded.server.app[LIFECYCLE].memory.read_gpus = gpu.GpuReport  # no GPU, no error
    assert await free(unbounded) == (None, None)
    gpus = await start(make_client, make_config, two_gpus((1, 4)))
    header, body = await free(gpus)  # the GPUs' last reading, less the reserve
    assert header is not None and header == str(body) and int(header) > 0
    budget = await start(make_client, make_config, None, ram_budget="5GiB")
    budget.server.app[LIFECYCLE].memory.read_gpus = gpu.GpuReport
    header, body = await free(budget)  # 3 GiB booked in RAM of its 5
    assert header == str(body) == str(2 * GiB)


def test_sizes() -> None:
    assert parse_budget("50%", 1000) == 500 and parse_budget("0.5 GiB", 0) == GiB // 2
    assert parse_budget(0, 10) is None and parse_budget("", 10) is None
    for bad in ("101%", "-1GiB", "lots", True):
        with pytest.raises(ConfigError, match="allowed"):
            parse_budget(bad, 1000)


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        ({"gpu_budget": {"x": "1GiB"}}, "resources.gpu_budget: got {'x': '1GiB'}; allowed"),
        ({"gpu_reserve": "150%"}, "resources.gpu_reserve: got '150%'; allowed"),
        ({"ram_reserve": [1]}, "resources.ram_reserve: got [1]; allowed"),
        ({"devices": {"gpu": "tpu"}}, "a device is cpu, gpu or cuda:<n>"),
    ],
)
def test_bad_resource_settings_name_the_key(
    make_config: Any, resources: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config({"resources": resources})
    assert problem in str(caught.value)
