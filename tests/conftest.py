"""Shared fixtures of the core tests: a config in a temp data dir, the app, the OpenAI SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.app import create_app
from lollms_server.config import Config, parse_config, prepare_data_dir

if TYPE_CHECKING:
    from openai import AsyncOpenAI

ECHO_DEFAULTS = {
    t: "echo" for t in ("ttt", "tti", "i2i", "tts", "stt", "ttv", "ttm", "audio2audio")
}

MakeConfig = Callable[..., Config]
MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeConfig:
    """Build a validated Config from a TOML-shaped dict; the data dir is a temp folder."""
    for name in ("LOLLMS_HOST", "LOLLMS_PORT", "LOLLMS_CONFIG", "LOLLMS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)

    def make(raw: dict[str, Any] | None = None, **server: Any) -> Config:
        raw = (
            dict(raw)
            if raw is not None
            else {
                "bindings": {"echo": {"type": "echo", "default_model": "echo", "delay_ms": 20}},
                "defaults": dict(ECHO_DEFAULTS),
            }
        )
        raw.setdefault("server", {}).setdefault("data_dir", str(tmp_path / "data"))
        raw["server"].update(server)
        config = parse_config(raw)
        prepare_data_dir(config)
        return config

    return make


@pytest.fixture
def make_client(aiohttp_client: Any, make_config: MakeConfig) -> MakeClient:
    """Start the app on a real local port (handler cancellation on, like `serve`)."""

    async def make(config: Config | None = None, **kwargs: Any) -> TestClient[Any, Any]:
        app = create_app(config or make_config(), **kwargs)
        client: TestClient[Any, Any] = await aiohttp_client(
            app, server_kwargs={"handler_cancellation": True}
        )
        return client

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    """A client of the app configured with one `echo` instance as every default."""
    return await make_client()


@pytest.fixture
async def sdk(client: TestClient[Any, Any]) -> AsyncIterator[AsyncOpenAI]:
    """The real `openai` SDK on the test server (a real local port), without retries."""
    from openai import AsyncOpenAI

    async with AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0, timeout=20
    ) as api:
        yield api
