"""Model lifecycle: memory budget with LRU eviction, busy and pinned models kept, keep_alive,
max loaded models, one load per model at a time (echo reports a configured model size)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from lollms_server.bindings import Binding
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import KEYSTORE, LIFECYCLE, REGISTRY
from lollms_server.plugins import load_plugins
from lollms_server.resources.lifecycle import parse_budget

Client = TestClient[Any, Any]


def config(make_config: Any, echo: dict[str, Any] | None = None, **resources: Any) -> Any:
    settings = {"type": "echo", "delay_ms": 100, "model_memory_mb": 100, **(echo or {})}
    return make_config(
        {"bindings": {"echo": settings}, "defaults": {"ttt": "echo"}, "resources": resources}
    )


def ask(model: str, stream: bool = False, **parameters: Any) -> dict[str, Any]:
    return {
        "input_data": [{"type": "text", "data": "one two"}],
        "model_name": model,
        "stream": stream,
        "parameters": parameters,
    }


def resident(client: Client) -> set[str]:
    return set(client.server.app[REGISTRY].get("echo").loaded)


async def test_budget_that_fits_one_model_swaps_lru(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, ram_budget="150MiB"))
    lifecycle = client.server.app[LIFECYCLE]
    for model in ("echo", "think", "echo", "think"):
        response = await client.post("/api/v1/generate", json=ask(model))
        assert response.status == 200, await response.text()
        assert resident(client) == {model}  # never both resident
        assert lifecycle.used_bytes() <= 150 * 2**20
    assert lifecycle.loads == 4 and lifecycle.evictions == 3


async def test_a_busy_model_is_never_evicted(make_client: Any, make_config: Any) -> None:
    """While slow streams, think does not fit beside it: think's load waits for slow to end
    (slow is never unloaded mid-stream), then slow makes room and think runs."""
    client: Client = await make_client(config(make_config, ram_budget="150MiB"))
    body = {**ask("slow", stream=True), "input_data": [{"type": "text", "data": "a b c d e f"}]}
    streaming = await client.post("/api/v1/generate", json=body)
    await streaming.content.readline()  # the slow model is loaded and generating
    waiting = asyncio.ensure_future(client.post("/api/v1/generate", json=ask("think")))
    await asyncio.sleep(0.25)
    assert not waiting.done() and resident(client) == {"slow"}
    assert b"final" in await streaming.read()  # slow ran to its end undisturbed
    later = await waiting
    assert later.status == 200, await later.text()
    assert resident(client) == {"think"}


async def test_pinned_models_stay(make_client: Any, make_config: Any) -> None:
    cfg = config(make_config, ram_budget="150MiB", pinned=["echo/echo"])
    client: Client = await make_client(cfg)
    assert (await client.post("/api/v1/generate", json=ask("echo"))).status == 200
    refused = await client.post("/api/v1/generate", json=ask("think"))
    assert refused.status == 503 and "pinned" in (await refused.json())["error"]["message"]
    assert resident(client) == {"echo"}


async def test_keep_alive_zero_unloads_after_the_request(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    assert (await client.post("/api/v1/generate", json=ask("echo"))).status == 200
    assert (await client.post("/api/v1/generate", json=ask("think", keep_alive=0))).status == 200
    await client.server.app[LIFECYCLE].reap()
    assert resident(client) == {"echo"}  # the default keep_alive (300 s) keeps echo
    chat = await client.post(
        "/v1/chat/completions",
        json={
            "model": "echo/echo",
            "messages": [{"role": "user", "content": "x"}],
            "keep_alive": 0,
        },
    )
    assert chat.status == 200
    for _ in range(30):  # the background reaper runs every 0.5 s
        if not resident(client):
            break
        await asyncio.sleep(0.1)
    assert resident(client) == set()


async def test_max_loaded_models_per_instance(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, echo={"max_loaded_models": 1}))
    for model in ("echo", "think", "slow"):
        assert (await client.post("/api/v1/generate", json=ask(model))).status == 200
        assert resident(client) == {model}


async def test_concurrent_requests_share_one_load(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, echo={"load_delay_ms": 200}))
    responses = await asyncio.gather(
        *(client.post("/api/v1/generate", json=ask("echo")) for _ in range(3))
    )
    assert [r.status for r in responses] == [200, 200, 200]
    assert client.server.app[REGISTRY].get("echo").load_count == 1


def test_budget_parsing() -> None:
    assert parse_budget("50%", 1000) == 500
    assert parse_budget("2GiB", 0) == 2 * 2**30 and parse_budget("512MB", 0) == 512 * 2**20
    assert parse_budget(1234, 0) == 1234 and parse_budget(None, 0) is None


async def test_a_load_bigger_than_estimated_is_settled_within_the_budget(
    make_client: Any, make_config: Any
) -> None:
    """Estimates 10 MiB, takes 60 MiB once loaded: after each load the books fit 100 MiB, and
    the next load of a model uses what it took last time."""
    echo = {"model_memory_mb": 10, "loaded_memory_mb": 60}
    client: Client = await make_client(config(make_config, echo, ram_budget="100MiB"))
    lifecycle = client.server.app[LIFECYCLE]
    for model in ("echo", "think", "slow", "echo", "think"):
        response = await client.post("/api/v1/generate", json=ask(model))
        assert response.status == 200, await response.text()
        assert lifecycle.used_bytes() <= 100 * 2**20
        assert resident(client) == {model}
    assert lifecycle.measured[("echo", "echo")] == 60 * 2**20


async def test_a_load_that_cannot_fit_once_measured_is_refused(
    make_client: Any, make_config: Any
) -> None:
    echo = {"model_memory_mb": 10, "loaded_memory_mb": 200}
    client: Client = await make_client(config(make_config, echo, ram_budget="100MiB"))
    refused = await client.post("/api/v1/generate", json=ask("echo"))
    error = (await refused.json())["error"]
    assert refused.status == 503 and "took 200 MiB once loaded" in error["message"]
    assert resident(client) == set() and client.server.app[LIFECYCLE].used_bytes() == 0


class StartsOnUse(EchoBinding):
    """Echo whose tokenizer and embeddings start the model when it is not running, as
    llama.cpp's do (they need the model's process)."""

    name = "starts-on-use"

    async def tokenize(self, text: str, model: str) -> list[int]:
        """Echo's ids, the model started first."""
        self.loaded.add(model)
        return await super().tokenize(text, model)

    async def detokenize(self, tokens: list[int], model: str) -> str:
        """Echo's text, the model started first."""
        self.loaded.add(model)
        return await super().detokenize(tokens, model)

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Echo's vectors, the model started first."""
        self.loaded.add(model)
        return await super().embed(texts, model)


class StartsOnUsePlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [StartsOnUse]


async def test_tokenizer_and_embeddings_load_within_the_books(
    make_client: Any, make_config: Any
) -> None:
    """Tokenize, detokenize and embed load their model through the lifecycle (max loaded
    models, budgets, keep_alive). Before, a user key tokenizing each model of a llama.cpp
    instance started one process per model past `max_loaded_models` and the RAM budget, and
    none was ever unloaded."""
    settings = {"type": "starts-on-use", "model_memory_mb": 100, "max_loaded_models": 1}
    cfg = make_config({"bindings": {"echo": settings}, "defaults": {"ttt": "echo"}})
    plugins = load_plugins({"starts-on-use": StartsOnUsePlugin()})
    client: Client = await make_client(cfg, plugins=plugins)
    calls = [
        ("/api/v1/tokenize", {"text": "hi", "model_name": "echo"}),
        ("/api/v1/count_tokens", {"text": "hi", "model_name": "think"}),
        ("/api/v1/detokenize", {"tokens": [104], "model_name": "slow"}),
        ("/v1/embeddings", {"model": "echo/fail", "input": "hi"}),
        ("/api/embed", {"model": "echo/echo", "input": "hi"}),
    ]
    books = client.server.app[LIFECYCLE].loaded
    for path, body in calls:
        response = await client.post(path, json=body)
        assert response.status == 200, (path, await response.text())
        assert len(resident(client)) == 1, (path, resident(client))
        assert {model for _, model in books} == resident(client)


async def test_a_load_refused_by_the_budget_unloads_nothing(
    make_client: Any, make_config: Any
) -> None:
    """Two 30 MiB models loaded (one pinned), max_loaded_models 2, a 190 MiB model asked for
    in a 200 MiB budget: it can never fit beside the pinned one, so the refusal must leave the
    idle model loaded. Before, max_loaded_models unloaded it first, then the budget refused."""
    small = {"type": "echo", "model_memory_mb": 30}
    big = {"type": "echo", "model_memory_mb": 190}
    resources = {"ram_budget": "200MiB", "max_loaded_models": 2, "pinned": ["small/echo"]}
    cfg = make_config({"bindings": {"small": small, "big": big}, "resources": resources})
    client: Client = await make_client(cfg)
    for model in ("small/echo", "small/think"):
        loaded = await client.post("/api/v1/load_model", json=load_body(model))
        assert loaded.status == 200, await loaded.text()
    refused = await client.post("/api/v1/load_model", json=load_body("big/echo"))
    assert refused.status == 503, await refused.text()
    assert "does not fit" in (await refused.json())["error"]["message"]
    lifecycle = client.server.app[LIFECYCLE]
    assert set(lifecycle.loaded) == {("small", "echo"), ("small", "think")}
    assert client.server.app[REGISTRY].get("small").loaded == {"echo", "think"}
    assert lifecycle.evictions == 0


def load_body(ref: str) -> dict[str, str]:
    instance, model = ref.split("/")
    return {"binding_name": instance, "model_name": model}


class SlowEmbed(EchoBinding):
    """Echo whose embeddings take a while, as a large batch does on llama.cpp."""

    name = "slow-embed"

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Echo's vectors, after 0.6 s."""
        await asyncio.sleep(0.6)
        return await super().embed(texts, model)


class SlowEmbedPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [SlowEmbed]


async def test_a_model_embedding_is_busy_and_its_keep_alive_restarts(
    make_client: Any, make_config: Any
) -> None:
    """While embeddings run on a model, another model's load may not unload it: it waits for
    them (before, a chat on another model killed a 16 s llama.cpp embedding batch: 503
    'unloaded during the request'), and each call restarts its keep_alive (before, a model used
    only for embeddings was unloaded keep_alive_s after its load however busy it was)."""
    settings = {"type": "slow-embed", "model_memory_mb": 100, "max_loaded_models": 1}
    cfg = make_config(
        {"bindings": {"echo": settings}, "defaults": {"ttt": "echo"},
         "resources": {"keep_alive_s": 1}}
    )  # fmt: skip
    plugins = load_plugins({"slow-embed": SlowEmbedPlugin()})
    client: Client = await make_client(cfg, plugins=plugins)
    lifecycle = client.server.app[LIFECYCLE]
    embedding = asyncio.ensure_future(
        client.post("/v1/embeddings", json={"model": "echo/echo", "input": "hi"})
    )
    await asyncio.sleep(0.2)
    chat = asyncio.ensure_future(client.post("/api/v1/generate", json=ask("think")))
    await asyncio.sleep(0.2)
    assert not chat.done() and resident(client) == {"echo"}  # think waits for the embeddings
    assert (await embedding).status == 200
    assert (await chat).status == 200 and resident(client) == {"think"}
    for _ in range(3):  # 2.4 s of embeddings, each call keeping the model 1 s more
        response = await client.post("/v1/embeddings", json={"model": "echo/echo", "input": "x"})
        assert response.status == 200
        await lifecycle.reap()
        assert resident(client) == {"echo"}


async def test_an_unload_during_the_load_unloads(make_client: Any, make_config: Any) -> None:
    """An unload sent while the model loads answers once the load is done and undoes it.
    Before, it answered 200 "unloaded" at once and the load then left the model loaded (a
    SmolLM2 process kept running, in the books and in /api/ps)."""
    client: Client = await make_client(config(make_config, echo={"load_delay_ms": 300}))
    loading = asyncio.ensure_future(client.post("/api/v1/load_model", json=load_body("echo/echo")))
    await asyncio.sleep(0.1)
    unloaded = await client.post("/api/v1/unload_model", json=load_body("echo/echo"))
    assert unloaded.status == 200 and (await loading).status == 200
    assert resident(client) == set() and not client.server.app[LIFECYCLE].loaded
    assert (await (await client.get("/api/ps")).json())["models"] == []


async def test_keep_alive_on_every_openai_endpoint_that_runs_a_model(
    make_client: Any, make_config: Any
) -> None:
    """`keep_alive` is an extra body field on `/v1` (README): images, speech, transcription
    and embeddings take it as chat does (and Ollama's /api/embed). Before, all four answered
    400 'Unknown field', so an image or voice model could not be unloaded after its request."""
    client: Client = await make_client(config(make_config))
    lifecycle = client.server.app[LIFECYCLE]
    wav = await (await client.post("/v1/audio/speech", json={"model": "echo/think",
                 "input": "hi", "keep_alive": "10m"})).read()  # fmt: skip
    entry = lifecycle.loaded[("echo", "think")]
    assert entry.expires_at is not None and 590 < entry.expires_at - entry.last_used <= 600 + 1e-6
    form = aiohttp.FormData()
    form.add_field("file", wav, filename="a.wav", content_type="audio/wav")
    form.add_field("model", "echo/slow")
    form.add_field("keep_alive", "0")
    calls = [
        (
            "/v1/images/generations",
            {"json": {"model": "echo/echo", "prompt": "x", "keep_alive": 0}},
        ),
        ("/v1/audio/transcriptions", {"data": form}),
        ("/v1/embeddings", {"json": {"model": "echo/fail", "input": "x", "keep_alive": "0s"}}),
        ("/api/embed", {"json": {"model": "echo/echo", "input": "x", "keep_alive": 0}}),
    ]
    for path, kwargs in calls:
        response = await client.post(path, **kwargs)
        assert response.status == 200, (path, await response.text())
    await lifecycle.reap()
    assert resident(client) == {"think"}  # keep_alive 0 unloaded the other three


async def test_the_lollms_face_takes_keep_alive_as_a_duration_too(
    make_client: Any, make_config: Any
) -> None:
    """`parameters.keep_alive` on /api/v1/generate takes seconds or an Ollama duration, as the
    Ollama and /v1 faces do (before: 422 'Not a valid number' for "10m")."""
    client: Client = await make_client(config(make_config))
    lifecycle = client.server.app[LIFECYCLE]
    response = await client.post("/api/v1/generate", json=ask("think", keep_alive="10m"))
    assert response.status == 200, await response.text()
    entry = lifecycle.loaded[("echo", "think")]
    assert entry.expires_at is not None and 590 < entry.expires_at - entry.last_used <= 600 + 1e-6
    bad = await client.post("/api/v1/generate", json=ask("think", keep_alive="soon"))
    assert bad.status == 422 and "duration" in await bad.text()


async def test_a_user_key_cannot_shorten_a_models_stay(make_client: Any, make_config: Any) -> None:
    """Unloading a model is the admin's (`/api/v1/unload_model`, Ollama's empty-prompt
    keep_alive 0): a user key's keep_alive under `[resources] keep_alive_s` counts as that.
    Before, any user key unloaded the model it had just used with `keep_alive: 0` on a real
    prompt (no admin role, no `unload` audit row), so one key made every other key's next
    request wait for a reload."""
    client: Client = await make_client(config(make_config))
    lifecycle = client.server.app[LIFECYCLE]
    key, _ = await client.server.app[KEYSTORE].create("u", "user")
    user = {"X-API-Key": key, "Host": "api.example"}
    chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "x"}]}
    calls = [
        ("/api/generate", {"model": "echo/echo", "prompt": "x", "stream": False, "keep_alive": 0}),
        ("/v1/chat/completions", {**chat, "keep_alive": "1s"}),
        ("/api/v1/generate", ask("echo", keep_alive=0)),
        ("/api/chat", {**chat, "keep_alive": 0}),  # streamed
        ("/api/embed", {"model": "echo/echo", "input": "x", "keep_alive": 0}),
    ]
    for path, body in calls:
        response = await client.post(path, json=body, headers=user)
        assert response.status == 200, (path, await response.text())
        await response.read()
        entry = lifecycle.loaded[("echo", "echo")]
        assert entry.expires_at is not None, path
        assert 299 < entry.expires_at - entry.last_used <= 300 + 1e-6, path
    await lifecycle.reap()
    assert resident(client) == {"echo"}
    longer = await client.post("/v1/chat/completions", json={**chat, "keep_alive": "10m"},
                               headers=user)  # fmt: skip
    assert longer.status == 200  # a longer stay is the key's to ask
    entry = lifecycle.loaded[("echo", "echo")]
    assert entry.expires_at is not None and 590 < entry.expires_at - entry.last_used <= 600 + 1e-6
    local = await client.post("/v1/chat/completions", json={**chat, "keep_alive": 0})
    assert local.status == 200  # the admin (here: this machine) still unloads with 0
    await lifecycle.reap()
    assert resident(client) == set()


async def test_keep_alive_forever_keeps_an_explicitly_loaded_model(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config, keep_alive_s=-1))
    body = {"binding_name": "echo", "model_name": "echo"}
    assert (await client.post("/api/v1/load_model", json=body)).status == 200
    await asyncio.sleep(1.2)  # over two rounds of the background reaper
    await client.server.app[LIFECYCLE].reap()
    assert resident(client) == {"echo"}  # -1: never unloaded, not "expired a second ago"
