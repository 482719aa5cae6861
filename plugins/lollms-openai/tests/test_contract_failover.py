"""Failover with a real upstream: kill the primary llama.cpp server mid-run; its refused
connection hands the request to the backup at once (no retry), the circuit opens, and when the
primary returns on the same port the circuit closes again."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from lollms_llamacpp.serve import WorkerServer
from lollms_openai import OpenAIBinding

from lollms_server.app import create_app
from lollms_server.config import parse_config
from lollms_server.keys import BREAKERS, MONITOR
from lollms_server.plugins import load_plugins
from lollms_server.testing import backend_unavailable, free_port, within
from lollms_server.testing.server import KitPlugin

from .conftest import TINY, Remote

TIMEOUT = 60.0


def start_primary(model: Path, port: int, api_key: str) -> WorkerServer:
    """A llama.cpp worker on a fixed port, so that it can come back where it was."""
    server = WorkerServer(model, alias=TINY, api_key=api_key, n_ctx=1024)
    server.args += ["--extra", json.dumps({"port": port})]
    return server.start()


@pytest_asyncio.fixture
async def failover(
    request: pytest.FixtureRequest, gguf_dir: Path, tiny: Remote, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], WorkerServer, int, str]]:
    port, key = free_port(), "primary-key"
    try:
        primary = start_primary(gguf_dir / "tiny.gguf", port, key)
    except RuntimeError as exc:
        backend_unavailable(request, str(exc))
    fast = {"retries": 1, "connect_timeout_s": 2.0, "health_timeout_s": 2.0}
    raw = {
        "server": {"data_dir": str(tmp_path / "data")},
        "bindings": {
            "primary": {
                "type": "openai",
                **Remote(f"{primary.url}/v1", key, TINY).settings(**fast),
            },
            "backup": {"type": "openai", **tiny.settings(**fast)},
        },
        "defaults": {"ttt": "primary"},
        "routes": {"chat": ["primary/tiny", "backup/tiny"]},
        "resilience": {"failure_threshold": 1, "cooldown_s": 600, "health_interval_s": 0},
    }
    plugins = load_plugins({"openai": KitPlugin(OpenAIBinding)}, entry_points=False)
    app = create_app(parse_config(raw), plugins)
    async with TestClient(TestServer(app, handler_cancellation=True)) as client:
        try:
            yield client, primary, port, key
        finally:
            primary.stop()


async def ask(client: TestClient[Any, Any]) -> dict[str, Any]:
    body = {
        "input_data": [{"type": "text", "data": "hello"}],
        "model_name": "chat",
        "parameters": {"max_tokens": 4},
    }
    response = await within(TIMEOUT, client.post("/api/v1/generate", json=body), "generate")
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return answer


async def test_kill_primary_then_recover(
    failover: tuple[TestClient[Any, Any], WorkerServer, int, str], gguf_dir: Path
) -> None:
    client, primary, port, key = failover
    app = client.server.app
    assert (await ask(client))["binding_instance"] == "primary"
    primary.stop()  # the upstream dies mid-run
    served = await ask(client)
    assert served["binding_instance"] == "backup"  # refused: handed over at once
    breaker = app[BREAKERS].of("primary")
    assert breaker.current_state() == "open"
    assert breaker.last_error  # why it opened is kept for health and the dashboard
    metrics = await (await client.get("/metrics")).text()
    assert 'lollms_fallbacks_total{instance="backup/tiny",route="chat"} 1.0' in metrics
    assert 'lollms_circuit_state{instance="primary"} 2.0' in metrics
    # a refused connection started nothing: with a fallback left it is not retried (retries = 1)
    retried = re.search(r'lollms_retries_total\{instance="primary"\} (\S+)', metrics)
    assert retried is None or float(retried.group(1)) == 0, retried
    assert (await ask(client))["binding_instance"] == "backup"  # the open circuit is skipped
    revived = start_primary(gguf_dir / "tiny.gguf", port, key)  # back on the same port
    try:
        await app[MONITOR].check_due()  # the monitor sees it answer: the next call is a trial
        assert breaker.current_state() == "half_open"
        assert (await ask(client))["binding_instance"] == "primary"
        assert breaker.current_state() == "closed"
    finally:
        revived.stop()
