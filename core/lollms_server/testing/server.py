"""The binding behind the real app: a config + plugin class served on a local test server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ..app import create_app
from ..bindings import GENERATION_TYPES, Binding
from ..config import Config, InstanceConfig, prepare_data_dir
from ..config_sections import ResilienceConfig, ResourcesConfig
from ..hookspecs import hookimpl
from ..plugins import load_plugins
from .base import contract, sample_inputs
from .fixtures import backend_unavailable
from .loop import LoopContract

if TYPE_CHECKING:
    Client: TypeAlias = TestClient[web.Request, web.Application]
else:  # older aiohttp releases do not subscript TestClient at run time
    Client = TestClient
OUTPUT_TYPE = {"ttt": "text", "tti": "image", "tts": "audio", "ttm": "audio", "ttv": "video"}


class KitPlugin:
    """An in-process plugin object that registers one binding class."""

    def __init__(self, binding_class: type[Binding]) -> None:
        self.binding_class = binding_class

    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        """The binding class under test."""
        return [self.binding_class]


def contract_config(
    binding_class: type[Binding],
    instance_name: str,
    settings: Mapping[str, Any],
    data_dir: Path,
    default_model: str | None = None,
) -> Config:
    """A Config with one instance of `binding_class`, the default for all it can do."""
    instance = InstanceConfig(
        name=instance_name,
        type=binding_class.name,
        default_model=default_model,
        settings=dict(settings),
    )
    defaults = {t: instance_name for t in GENERATION_TYPES if t in binding_class.capabilities}
    config = Config(data_dir=data_dir, bindings={instance_name: instance}, defaults=defaults)
    prepare_data_dir(config)
    return config


@asynccontextmanager
async def serve_binding(
    binding_class: type[Binding],
    instance_name: str,
    settings: Mapping[str, Any],
    data_dir: Path,
    default_model: str | None = None,
    resources: ResourcesConfig | None = None,
    *,
    resilience: ResilienceConfig | None = None,
) -> AsyncIterator[Client]:
    """A test client of `create_app` serving one instance (only this plugin is loaded);
    `resources` sets the model lifecycle and queue limits, `resilience` the breakers and the
    health monitor (its interval, restarts); defaults otherwise."""
    config = contract_config(binding_class, instance_name, settings, data_dir, default_model)
    if resources is not None:
        config.resources = resources
    if resilience is not None:
        config.resilience = resilience
    plugins = load_plugins(
        {f"contract-{binding_class.name}": KitPlugin(binding_class)}, entry_points=False
    )
    app = create_app(config, plugins)
    server = TestServer(app, handler_cancellation=True)
    async with TestClient(server) as client:
        yield client


async def instance_health(client: Client, instance_name: str) -> dict[str, Any]:
    """The instance's entry of `GET /api/v1/list_active_bindings`."""
    response = await client.get("/api/v1/list_active_bindings")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    health: dict[str, Any] = body["bindings"][instance_name]["health"]
    return health


def input_data(generation_type: str, prompt: str) -> list[dict[str, Any]]:
    """The lollms `input_data` of a prompt plus the sample media its type needs."""
    items: list[dict[str, Any]] = [{"type": "text", "role": "user_prompt", "data": prompt}]
    for item in sample_inputs(generation_type):
        data = base64.b64encode(item.data).decode("ascii")
        items.append(
            {"type": item.type, "role": item.role, "data": data, "mime_type": item.mime_type}
        )
    return items


def sse_events(text: str) -> list[dict[str, Any]]:
    """The JSON `data:` events of an SSE body."""
    events = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return events


class ServerContract(LoopContract):
    """The binding works through the real app: POST /api/v1/generate round trips, and never
    blocks the app's event loop (LoopContract)."""

    server_generation_type: ClassVar[str | None] = None

    @pytest_asyncio.fixture
    async def server(
        self,
        request: pytest.FixtureRequest,
        binding_settings: Mapping[str, Any],
        tmp_path: Path,
    ) -> AsyncIterator[Client]:
        """A client of the app serving the binding under test as `instance_name`."""
        async with serve_binding(
            self.binding_type(), self.instance_name, binding_settings, tmp_path / "data"
        ) as client:
            await self._wait_up(request, client)
            yield client

    async def _wait_up(self, request: pytest.FixtureRequest, client: Client) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout_s
        health = await instance_health(client, self.instance_name)
        while health["state"] == "down" and loop.time() < deadline:
            await asyncio.sleep(0.2)
            health = await instance_health(client, self.instance_name)
        if health["state"] == "down":
            backend_unavailable(request, f"{self.instance_name!r} down in the app: {health}")

    def generate_body(self, generation_type: str, **extra: Any) -> dict[str, Any]:
        """A `POST /api/v1/generate` body for the instance under test."""
        prompt = self.prompt if generation_type == "ttt" else "a short test"
        return {
            "input_data": input_data(generation_type, prompt),
            "binding_name": self.instance_name,
            "model_name": self.model_for(generation_type),
            "generation_type": generation_type,
            "parameters": {"max_tokens": 16} if generation_type == "ttt" else {},
            **extra,
        }

    @contract()
    async def test_generate_round_trip(self, server: Client) -> None:
        """POST /api/v1/generate answers 200 with an output of the generation's type."""
        kind = self.server_generation_type or self.first_generation_type()
        response = await server.post("/api/v1/generate", json=self.generate_body(kind))
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["binding_instance"] == self.instance_name
        outputs = [o for o in body["output"] if o["type"] == OUTPUT_TYPE[kind]]
        assert outputs, f"no {OUTPUT_TYPE[kind]} output in {body['output']}"
        data = outputs[0]["data"]
        assert data.strip() if kind == "ttt" else base64.b64decode(data), "empty output"

    @contract("ttt", "stream")
    async def test_stream_round_trip(self, server: Client) -> None:
        """A streamed generate sends text chunks and ends with one `final` event, no error."""
        body = self.generate_body("ttt", stream=True)
        response = await server.post("/api/v1/generate", json=body)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await response.text())
        kinds = [e["type"] for e in events]
        assert "error" not in kinds, events
        assert kinds.count("final") == 1 and kinds[-1] == "final", kinds
        assert "".join(e["content"] for e in events if e["type"] == "chunk").strip()

    @contract()
    async def test_models_are_listed_by_the_app(self, server: Client) -> None:
        """GET list_available_models/<instance> lists models; the instance is healthy."""
        response = await server.get(f"/api/v1/list_available_models/{self.instance_name}")
        assert response.status == 200, await response.text()
        names = [m["name"] for m in (await response.json())["models"]]
        assert names, "the app lists no models for the instance"
        health = await instance_health(server, self.instance_name)
        assert health["state"] == "up", health
