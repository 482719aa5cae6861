"""Circuit breakers, fallback routes, least-busy balancing, the health monitor, readiness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lollms_server.bindings import Binding, Chunk, GenerationRequest, Result
from lollms_server.builtin.echo import EchoBinding
from lollms_server.errors import NotSupported
from lollms_server.hookspecs import hookimpl
from lollms_server.httpkit.observe import READY_RECHECK_S
from lollms_server.keys import BREAKERS, MONITOR, REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]


def config(make_config: Any, **extra: Any) -> Any:
    raw = {
        "bindings": {
            "good": {"type": "echo", "delay_ms": 50},
            "other": {"type": "echo", "delay_ms": 50},
            "broken": {"type": "echo", "down": True},
        },
        "defaults": {"ttt": "good"},
        "resilience": {"failure_threshold": 2, "cooldown_s": 0.3, "health_interval_s": 0},
        **extra,
    }
    return make_config(raw)


def ask(model: str | None = None, binding: str | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"input_data": [{"type": "text", "data": "hello there"}], **more}
    if model:
        body["model_name"] = model
    if binding:
        body["binding_name"] = binding
    return body


async def metric(client: Client, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_circuit_opens_fails_fast_then_recovers(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config))
    for _ in range(2):
        response = await client.post("/api/v1/generate", json=ask("fail", "good"))
        assert response.status == 503
    assert client.server.app[BREAKERS].of("good").current_state() == "open"
    assert await metric(client, "lollms_circuit_state", instance="good") == 2
    refused = await client.post("/api/v1/generate", json=ask("echo", "good"))
    error = (await refused.json())["error"]
    assert refused.status == 503 and "circuit open" in error["message"]
    assert error["binding"] == "good" and int(refused.headers["Retry-After"]) >= 1
    await asyncio.sleep(0.35)  # cooldown over: one trial goes through and closes the circuit
    trial = await client.post("/api/v1/generate", json=ask("echo", "good"))
    assert trial.status == 200
    assert client.server.app[BREAKERS].of("good").current_state() == "closed"


async def test_readiness_reports_instances(make_client: Any, make_config: Any) -> None:
    """One instance down leaves the server ready (its requests get a 503 naming it); it is
    listed, and readiness turns 503 only once no instance can serve."""
    client: Client = await make_client(config(make_config))
    ready = await client.get("/api/v1/ready")
    body = await ready.json()
    assert ready.status == 200 and body["ready"] is True
    assert body["instances"]["broken"] == {"state": "down", "circuit": "closed"}
    assert body["instances"]["good"] == {"state": "up", "circuit": "closed"}
    refused = await client.post("/api/v1/generate", json=ask(binding="broken"))
    assert refused.status == 503, await refused.text()
    assert "broken" in (await refused.json())["error"]["message"]
    remote = await client.get("/api/v1/ready", headers={"Host": "evil.example"})
    assert remote.status == 200  # public, like health: no key needed
    for name in ("good", "other"):
        for _ in range(2):  # failure_threshold
            client.server.app[BREAKERS].of(name).failure("test")
    closed = await client.get("/api/v1/ready")
    assert closed.status == 503 and (await closed.json())["ready"] is False


async def test_readiness_sees_a_backend_back_within_seconds_despite_the_backoff(
    make_client: Any, make_config: Any
) -> None:
    """A down instance is checked every 30 s x8 at most, but readiness probes re-check it (in
    the background, at most every 5 s): a backend that came back is up at the next probes."""
    raw = {
        "bindings": {"only": {"type": "echo", "down": True}},
        "resilience": {"health_interval_s": 30},
    }
    client: Client = await make_client(make_config(raw))
    monitor = client.server.app[MONITOR]
    for _ in range(3):  # the backoff reaches x8: the next scheduled check is 4 minutes away
        await monitor._check(list(client.server.app[REGISTRY]))
    assert (await client.get("/api/v1/ready")).status == 503
    client.server.app[REGISTRY].get("only").config["down"] = False  # the backend is back
    monitor.checked_at["only"] -= READY_RECHECK_S  # as if the last check was 5 s ago
    first = await client.get("/api/v1/ready")  # starts the re-check, answers at once
    assert first.status == 503
    for _ in range(50):
        if (await client.get("/api/v1/ready")).status == 200:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("readiness did not see the instance back")
    assert monitor.latest["only"].state == "up"


async def test_a_bad_request_does_not_open_the_circuit(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config))
    for _ in range(3):
        response = await client.post("/api/v1/generate", json=ask("no-such-model", "good"))
        assert response.status == 404
    assert client.server.app[BREAKERS].of("good").current_state() == "closed"


async def test_fallback_route_serves_and_says_who(make_client: Any, make_config: Any) -> None:
    routes = {"routes": {"chat": ["broken/echo", "good/echo"]}}
    client: Client = await make_client(config(make_config, **routes))
    response = await client.post("/api/v1/generate", json=ask("chat"))
    body = await response.json()
    assert response.status == 200, body
    assert body["binding_instance"] == "good" and body["output"][0]["data"] == "hello there"
    assert await metric(client, "lollms_fallbacks_total", route="chat", instance="good/echo") == 1
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "via openai"}]},
    )
    assert chat.status == 200
    assert (await chat.json())["choices"][0]["message"]["content"] == "via openai"
    streamed = await client.post("/api/v1/generate", json=ask("chat", stream=True))
    events = [
        json.loads(line[6:])
        for line in (await streamed.text()).splitlines()
        if line[:6] == "data: "
    ]
    assert [e["type"] for e in events].count("error") == 0
    assert events[-1]["metadata"]["binding_instance"] == "good"


async def test_ollama_answers_name_the_fallback_that_served(
    make_client: Any, make_config: Any
) -> None:
    """Before, Ollama's chat and generate named the route's first target (`broken/echo`) in
    every object while `good` had served the answer."""
    routes = {"routes": {"chat": ["broken/echo", "good/echo"]}}
    client: Client = await make_client(config(make_config, **routes))
    text = [{"role": "user", "content": "via ollama"}]
    for path, body in (
        ("/api/chat", {"model": "chat", "messages": text}),
        ("/api/generate", {"model": "chat", "prompt": "via ollama"}),
    ):
        whole = await client.post(path, json={**body, "stream": False})
        assert whole.status == 200, await whole.text()
        assert (await whole.json())["model"] == "good/echo:latest", path
        streamed = await client.post(path, json=body)
        lines = [json.loads(line) for line in (await streamed.text()).splitlines()]
        assert lines and {line["model"] for line in lines} == {"good/echo:latest"}, path


async def test_every_target_down_is_a_503(make_client: Any, make_config: Any) -> None:
    routes = {"routes": {"chat": ["broken/echo", "broken/slow"]}}
    client: Client = await make_client(config(make_config, **routes))
    response = await client.post("/api/v1/generate", json=ask("chat"))
    assert response.status == 503
    assert (await response.json())["error"]["binding"] == "broken"


async def test_least_busy_spreads_concurrent_requests(make_client: Any, make_config: Any) -> None:
    raw = {
        "bindings": {
            "a": {"type": "echo", "delay_ms": 100, "max_concurrent": 1},
            "b": {"type": "echo", "delay_ms": 100, "max_concurrent": 1},
        },
        "defaults": {"ttt": "a"},
        "routes": {"pool": {"targets": ["a/slow", "b/slow"], "strategy": "least-busy"}},
    }
    client: Client = await make_client(make_config(raw))
    responses = await asyncio.gather(
        *(client.post("/api/v1/generate", json=ask("pool")) for _ in range(2))
    )
    served = sorted([(await r.json())["binding_instance"] for r in responses])
    assert served == ["a", "b"]


async def test_monitor_closes_a_circuit_when_the_instance_answers(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    app = client.server.app
    breaker = app[BREAKERS].of("good")
    breaker.cooldown_s = 3600
    for _ in range(2):
        breaker.failure("simulated outage")
    assert breaker.current_state() == "open"
    await app[MONITOR].check_due()
    assert breaker.current_state() == "half_open"  # it answers: the next call is a trial
    response = await client.post("/api/v1/generate", json=ask("echo", "good"))
    assert response.status == 200
    assert breaker.current_state() == "closed"
    assert app[MONITOR].latest["broken"].state == "down"
    assert app[BREAKERS].of("broken").current_state() == "closed"  # never opened by health alone


class NoChat(EchoBinding):
    """An echo that cannot do what it is asked (an upstream without the route it needs)."""

    name = "nochat"

    async def generate(self, request: GenerationRequest) -> Result:
        raise NotSupported("this upstream has no chat endpoint", binding=self.instance_name)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        raise NotSupported("this upstream has no chat endpoint", binding=self.instance_name)
        yield Chunk()  # pragma: no cover - makes this an async generator


class NoChatPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [NoChat]


async def test_a_target_that_cannot_do_the_request_hands_over(
    make_client: Any, make_config: Any
) -> None:
    """A route's target answering 501 (not supported) hands over to the next, and its circuit
    stays closed: the backend is up, it only lacks the operation."""
    raw = {
        "bindings": {"good": {"type": "echo"}, "lacking": {"type": "nochat"}},
        "defaults": {"ttt": "good"},
        "resilience": {"failure_threshold": 1, "health_interval_s": 0},
        "routes": {"chat": ["lacking/echo", "good/echo"]},
    }
    plugins = load_plugins(extra={"nochat": NoChatPlugin()})
    client: Client = await make_client(make_config(raw), plugins=plugins)
    for stream in (False, True):
        response = await client.post("/api/v1/generate", json=ask("chat", stream=stream))
        text = await response.text()
        assert response.status == 200 and "hello there" in text, text
        assert '"type":"error"' not in text.replace(" ", ""), text
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "via openai"}]},
    )
    assert chat.status == 200 and (await chat.json())["model"] == "good/echo"
    assert client.server.app[BREAKERS].of("lacking").current_state() == "closed"
    alone = await client.post("/api/v1/generate", json=ask("echo", binding="lacking"))
    assert alone.status == 501  # asked directly, the 501 stands
