"""A load that only busy models stand in the way of waits for them (up to queue_timeout_s), as
Ollama and LocalAI do, instead of failing: three models streaming at once where two fit all
answer, never more than two loaded, and a busy model is never unloaded mid-generation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from lollms_server.bindings import Binding
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import LIFECYCLE, REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
WORDS = "a b c d e f g h"  # the slow model streams one word per delay_ms


class LocalEcho(EchoBinding):
    """Echo whose models live in this process, as llama.cpp's and diffusers' do (echo itself
    holds none, so its loads do not wait on one another)."""

    name = "local-echo"
    loads_models = True


class LocalEchoPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [LocalEcho]


async def three_instances(make_client: Any, make_config: Any, **resources: Any) -> Client:
    echo = {"type": "local-echo", "delay_ms": 60, "model_memory_mb": 100}
    bindings = {name: dict(echo) for name in ("a", "b", "c")}
    config = make_config({"bindings": bindings, "resources": {"max_loaded_models": 2, **resources}})
    client: Client = await make_client(config, plugins=load_plugins({"le": LocalEchoPlugin()}))
    return client


def stream(instance: str) -> dict[str, Any]:
    return {"input_data": [{"type": "text", "data": WORDS}], "binding_name": instance,
            "model_name": "slow", "stream": True}  # fmt: skip


def loaded(client: Client) -> set[str]:
    registry = client.server.app[REGISTRY]
    return {f"{name}/{m}" for name in ("a", "b", "c") for m in registry.get(name).loaded}


async def test_three_models_streaming_where_two_fit_all_answer(
    make_client: Any, make_config: Any
) -> None:
    client = await three_instances(make_client, make_config)
    most = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(loaded(client)))
            await asyncio.sleep(0.01)

    async def run(instance: str) -> tuple[int, bytes]:
        response = await client.post("/api/v1/generate", json=stream(instance))
        return response.status, await response.read()

    watcher = asyncio.ensure_future(watch())
    started = time.monotonic()
    results = await asyncio.gather(run("a"), run("b"), run("c"))
    done.set()
    await watcher
    for status, body in results:
        assert status == 200 and b"final" in body and b"error" not in body, body
    assert most == 2  # never three loaded at once
    assert time.monotonic() - started >= 2 * 8 * 0.06  # the third ran after one of the others
    assert client.server.app[LIFECYCLE].evictions == 1


async def test_a_load_waits_for_busy_models_up_to_the_queue_timeout(
    make_client: Any, make_config: Any
) -> None:
    client = await three_instances(make_client, make_config, queue_timeout_s=0.2)
    streams = [await client.post("/api/v1/generate", json=stream(name)) for name in "ab"]
    for response in streams:
        await response.content.readline()  # both generating: busy for ~0.5 s more
    started = time.monotonic()
    refused = await client.post("/api/v1/generate", json=stream("c"))
    took = time.monotonic() - started
    error = (await refused.json())["error"]
    assert refused.status == 503 and error["type"] == "overloaded", error
    assert "a/slow" in error["message"] and "busy" in error["message"]
    assert "waited 0.2s" in error["message"] and 0.2 <= took < 2, took
    assert loaded(client) == {"a/slow", "b/slow"}
    for response in streams:
        assert b"final" in await response.read()  # neither was cut short


async def test_a_pinned_model_in_the_way_is_refused_at_once(
    make_client: Any, make_config: Any
) -> None:
    """Waiting would not help a model that only pinned models stand in the way of."""
    client = await three_instances(make_client, make_config, pinned=["a", "b"])
    for name in "ab":
        assert (await client.post("/api/v1/load_model", json={"binding_name": name,
                "model_name": "slow"})).status == 200  # fmt: skip
    started = time.monotonic()
    refused = await client.post("/api/v1/generate", json=stream("c"))
    assert refused.status == 503 and time.monotonic() - started < 1
    assert "pinned" in (await refused.json())["error"]["message"]


async def test_a_waiting_load_nobody_wants_any_more_is_dropped(
    make_client: Any, make_config: Any
) -> None:
    """A client that gives up while its model's load waits takes the load with it: the busy
    models, once done, are not unloaded for a model nobody asked for any more."""
    client = await three_instances(make_client, make_config)
    streams = [await client.post("/api/v1/generate", json=stream(name)) for name in "ab"]
    for response in streams:
        await response.content.readline()
    gave_up = asyncio.ensure_future(client.post("/api/v1/generate", json=stream("c")))
    await asyncio.sleep(0.2)
    gave_up.cancel()
    for response in streams:
        assert b"final" in await response.read()
    await asyncio.sleep(0.4)  # a few rounds of the waiting load's checks
    assert loaded(client) == {"a/slow", "b/slow"}
    assert client.server.app[LIFECYCLE].evictions == 0


async def test_a_first_load_bigger_than_estimated_waits_too(
    make_client: Any, make_config: Any
) -> None:
    """Each model is estimated at 10 MiB and takes 60 once loaded (a GGUF's file size against
    its process's RSS), two fit 150 MiB: the third, loaded while both others stream, is unloaded
    again and waits for one of them instead of failing. Before, it got a 503 'took 60 MiB once
    loaded' (llama.cpp: tiny0 503 while tiny1 and tiny2 streamed)."""
    client = await three_instances(
        make_client, make_config, ram_budget="150MiB", max_loaded_models=0
    )
    for name in "abc":  # estimated at model_memory_mb, a load reports loaded_memory_mb
        client.server.app[REGISTRY].get(name).config.update(model_memory_mb=10, loaded_memory_mb=60)
    streams = [await client.post("/api/v1/generate", json=stream(name)) for name in "ab"]
    for response in streams:
        await response.content.readline()
    third = await client.post("/api/v1/generate", json=stream("c"))
    body = await third.read()
    assert third.status == 200 and b"final" in body, body
    for response in streams:
        assert b"final" in await response.read()
    assert client.server.app[LIFECYCLE].used_bytes() <= 150 * 2**20


async def test_concurrent_loads_of_remote_models_keep_max_loaded_models(
    make_client: Any, make_config: Any
) -> None:
    """Models that live on another machine (echo stands in for ollama and lollms nodes, whose
    loads do not wait on one another) still count: three loads at once with room for two end
    with two loaded. Before, each planned before the others were booked and all three stayed."""
    echo = {"type": "echo", "load_delay_ms": 200, "model_memory_mb": 100}
    bindings = {name: dict(echo) for name in ("a", "b", "c")}
    config = make_config({"bindings": bindings, "resources": {"max_loaded_models": 2}})
    client: Client = await make_client(config)
    loads = [
        client.post("/api/v1/load_model", json={"binding_name": name, "model_name": "echo"})
        for name in "abc"
    ]
    assert [r.status for r in await asyncio.gather(*loads)] == [200, 200, 200]
    registry = client.server.app[REGISTRY]
    assert sum(len(registry.get(name).loaded) for name in "abc") == 2
    assert len(client.server.app[LIFECYCLE].loaded) == 2


async def test_status_names_the_loads_under_way(make_client: Any, make_config: Any) -> None:
    """While c's load waits for a or b, /api/v1/status says so: c is loading, not loaded (its
    request already counts as running in the queue depth). Before, nothing named it."""
    client = await three_instances(make_client, make_config)
    streams = [await client.post("/api/v1/generate", json=stream(name)) for name in "ab"]
    for response in streams:
        await response.content.readline()
    waiting = asyncio.ensure_future(client.post("/api/v1/generate", json=stream("c")))
    await asyncio.sleep(0.15)
    status = await (await client.get("/api/v1/status")).json()
    assert status["loading"] == ["c/slow"] and status["loaded"] == ["a/slow", "b/slow"]
    for response in [*streams, await waiting]:
        assert b"final" in await response.read()
    status = await (await client.get("/api/v1/status")).json()
    assert status["loading"] == [] and "c/slow" in status["loaded"]
