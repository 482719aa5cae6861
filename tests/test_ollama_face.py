"""The Ollama-compatible face, driven by the official `ollama` Python client over a real port."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import ollama
import pytest
from aiohttp.test_utils import TestClient

from lollms_server.bindings import (
    GENERATION_TYPES,
    Binding,
    Chunk,
    GenerationRequest,
    ModelInfo,
)
from lollms_server.builtin import tiny_media
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.httpkit.error_middleware import face_of
from lollms_server.keys import KEYSTORE, REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
ECHO_DEFAULTS = dict.fromkeys(GENERATION_TYPES, "echo")
PNG = tiny_media.png(tiny_media.gradient(4, 4, 1))


class ProbeBinding(EchoBinding):
    """Echo that can see images and remembers its requests and closed streams."""

    name = "probe"
    capabilities = EchoBinding.capabilities | {"vision"}

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.requests: list[GenerationRequest] = []
        self.closed = asyncio.Event()

    async def list_models(self) -> list[ModelInfo]:
        """Echo's models, able to see images."""
        listed = await super().list_models()
        return [dataclasses.replace(m, capabilities=m.capabilities | {"vision"}) for m in listed]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Echo's stream, recorded; `closed` is set when the stream is closed or ends."""
        self.requests.append(request)
        try:
            async for chunk in super().stream(request):
                yield chunk
        finally:
            self.closed.set()

    def _answer(self, request: GenerationRequest) -> str:
        images = [image for message in request.messages for image in message.images]
        text = super()._answer(request)
        if not images:
            return text
        sizes = ",".join(f"{i.mime_type}:{len(i.data)}" for i in images)
        return f"saw {sizes} {text}"


class ProbePlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [ProbeBinding]


@pytest.fixture
async def server(make_client: Any, make_config: Any) -> Client:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "delay_ms": 20},
                "eye": {"type": "probe", "default_model": "echo", "delay_ms": 20},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    plugins = load_plugins({"probe-test": ProbePlugin()})
    client: Client = await make_client(config, plugins=plugins)
    return client


@pytest.fixture
async def api(server: Client) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama.AsyncClient(host=str(server.make_url("")), timeout=30) as client:
        yield client


def probe(server: Client) -> ProbeBinding:
    binding = server.server.app[REGISTRY].get("eye")
    assert isinstance(binding, ProbeBinding)
    return binding


async def test_version(server: Client) -> None:
    response = await server.get("/api/version")
    assert response.status == 200
    body = await response.json()
    assert body["version"].count(".") == 2 and body["lollms_server_version"]


async def test_tags_list_every_model_with_details(api: ollama.AsyncClient) -> None:
    listed = await api.list()
    names = [m.model for m in listed.models]
    assert "echo/echo:latest" in names and "eye/think:latest" in names
    assert len(names) == len(set(names)) == 8  # four echo models on each instance
    entry = next(m for m in listed.models if m.model == "echo/echo:latest")
    assert entry.details is not None and entry.details.family == "echo"
    assert entry.details.families == ["echo"]
    assert entry.digest and len(entry.digest) == 64 and entry.modified_at is not None


async def test_show(api: ollama.AsyncClient) -> None:
    shown = await api.show("echo/echo:latest")
    assert shown.details is not None and shown.details.family == "echo"
    assert shown.capabilities == ["completion", "embedding"]  # echo has no vision
    assert shown.modelinfo is not None and shown.modelinfo["echo.context_length"] == 4096
    assert (await api.show("echo/echo")).details == shown.details  # the tag is optional
    assert "vision" in ((await api.show("eye/echo")).capabilities or [])
    with pytest.raises(ollama.ResponseError) as caught:
        await api.show("echo/nope")
    assert caught.value.status_code == 404
    assert "echo/nope" in caught.value.error


async def test_chat_not_streamed(api: ollama.AsyncClient) -> None:
    reply = await api.chat(
        model="echo/echo", messages=[{"role": "user", "content": "hello there world"}]
    )
    assert reply.message.role == "assistant"
    assert reply.message.content == "hello there world"
    assert reply.done is True and reply.done_reason == "stop"
    assert reply.eval_count == 3 and reply.prompt_eval_count == 3
    assert reply.model == "echo/echo:latest"
    assert reply.total_duration is not None and reply.total_duration > 0


async def test_chat_streamed(api: ollama.AsyncClient) -> None:
    parts = [
        part
        async for part in await api.chat(
            model="echo/echo:latest",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
        )
    ]
    assert len(parts) == 5  # a chunk per word, then the final object
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content or "" for p in parts) == "one two three four"
    final = parts[-1]
    assert final.done_reason == "stop" and final.eval_count == 4
    assert final.eval_duration is not None and final.prompt_eval_duration is not None


async def test_streaming_is_the_default(server: Client) -> None:
    body = {"model": "echo/echo", "messages": [{"role": "user", "content": "a b c"}]}
    response = await server.post("/api/chat", json=body)
    assert response.status == 200
    assert response.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}


async def test_generate_with_options(api: ollama.AsyncClient) -> None:
    reply = await api.generate(model="echo/echo", prompt="a b c d e")
    assert reply.response == "a b c d e" and reply.done_reason == "stop"
    short = await api.generate(model="echo/echo", prompt="a b c d e", options={"num_predict": 2})
    assert short.response == "a b" and short.done_reason == "length" and short.eval_count == 2
    stopped = await api.generate(
        model="echo", prompt="one two STOP three", options={"stop": ["STOP"]}
    )
    assert stopped.response.strip() == "one two"
    parts = [p async for p in await api.generate(model="echo/echo", prompt="x y", stream=True)]
    assert "".join(p.response or "" for p in parts) == "x y" and parts[-1].done


async def test_options_become_binding_parameters(server: Client, api: ollama.AsyncClient) -> None:
    await api.chat(
        model="eye/echo",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        options={
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 7,
            "num_predict": 5,
            "stop": ["x"],
            "seed": 3,
            "repeat_penalty": 1.1,
            "num_ctx": 512,
            "mirostat_eta": 0.5,
        },
        format="json",
        keep_alive="5m",
        think=True,
    )
    request = probe(server).requests[-1]
    assert [m.role for m in request.messages] == ["system", "user"]
    assert dict(request.parameters) == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 7,
        "max_tokens": 5,
        "stop": ["x"],
        "seed": 3,
        "repeat_penalty": 1.1,
        "num_ctx": 512,
        "mirostat_eta": 0.5,
        "response_format": {"type": "json_object"},
        "keep_alive": 300.0,  # "5m" in seconds
        "think": True,
    }
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    await api.generate(model="eye/echo", prompt="hi", system="sys", format=schema, raw=True)
    request = probe(server).requests[-1]
    assert request.raw_prompt is True
    assert request.parameters["response_format"]["json_schema"]["schema"] == schema
    assert [m.content for m in request.messages] == ["sys", "hi"]


async def test_thinking(api: ollama.AsyncClient) -> None:
    messages = [{"role": "user", "content": "why"}]
    reply = await api.chat(model="echo/think", messages=messages)
    assert reply.message.content == "why" and reply.message.thinking == "The user said: why"
    parts = [p async for p in await api.chat(model="echo/think", messages=messages, stream=True)]
    assert "".join(p.message.thinking or "" for p in parts) == "The user said: why"
    assert "".join(p.message.content or "" for p in parts) == "why"
    hidden = await api.chat(model="echo/think", messages=messages, think=False)
    assert hidden.message.content == "why" and hidden.message.thinking is None
    generated = await api.generate(model="echo/think", prompt="why")
    assert generated.response == "why" and generated.thinking == "The user said: why"


async def test_images(server: Client, api: ollama.AsyncClient) -> None:
    reply = await api.chat(
        model="eye/echo", messages=[{"role": "user", "content": "what", "images": [PNG]}]
    )
    assert reply.message.content == f"saw image/png:{len(PNG)} what"
    image = probe(server).requests[-1].messages[-1].images[0]
    assert image.data == PNG and image.role == "input_image"
    generated = await api.generate(model="eye/echo", prompt="and", images=[PNG, PNG])
    assert generated.response.startswith(f"saw image/png:{len(PNG)},image/png:{len(PNG)} ")
    with pytest.raises(ollama.ResponseError) as caught:  # echo has no vision
        await api.chat(
            model="echo/echo", messages=[{"role": "user", "content": "x", "images": [PNG]}]
        )
    assert caught.value.status_code == 501 and "vision" in caught.value.error
    not_image = base64.b64encode(b"hello, not an image").decode()
    body = {"model": "eye/echo", "prompt": "x", "images": [not_image], "stream": False}
    response = await server.post("/api/generate", json=body)
    assert response.status == 400
    assert "not a PNG" in (await response.json())["error"]


async def test_load_unload_and_ps(api: ollama.AsyncClient) -> None:
    assert (await api.ps()).models == []
    loaded = await api.generate(model="echo/slow")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    running = (await api.ps()).models
    assert [m.model for m in running] == ["echo/slow:latest"]
    assert running[0].details is not None and running[0].details.family == "echo"
    assert running[0].expires_at is not None and running[0].context_length == 4096
    unloaded = await api.chat(model="echo/slow", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload" and unloaded.message.content == ""
    assert (await api.ps()).models == []
    again = await api.chat(model="echo/slow:latest", keep_alive="10m")
    assert again.done_reason == "load"
    assert (await api.generate(model="echo/slow", keep_alive="0s")).done_reason == "unload"
    with pytest.raises(ollama.ResponseError) as caught:
        await api.generate(model="echo/nope")
    assert caught.value.status_code == 404


async def test_ps_expires_at_follows_keep_alive(api: ollama.AsyncClient) -> None:
    """`/api/ps` says when keep_alive unloads a model, as Ollama does (not a made-up forever)."""
    messages = [{"role": "user", "content": "hi"}]
    await api.chat(model="echo/echo", messages=messages, keep_alive="10m")
    expires = (await api.ps()).models[0].expires_at
    assert expires is not None
    left = expires.timestamp() - time.time()
    assert 590 < left <= 600
    await api.chat(model="echo/echo", messages=messages, keep_alive=-1)
    forever = (await api.ps()).models[0].expires_at
    assert forever is not None and forever.year == 9999


async def test_a_load_without_a_prompt_takes_its_keep_alive(api: ollama.AsyncClient) -> None:
    """`ollama run --keepalive 1h` (a generate without prompt) loads the model for that long,
    and a later load request restarts the timer with its own keep_alive, as Ollama does.
    Before, a load kept the server's default (5 min) whatever keep_alive it sent."""
    await api.generate(model="echo/echo", keep_alive="1h")
    expires = (await api.ps()).models[0].expires_at
    assert expires is not None and 3590 < expires.timestamp() - time.time() <= 3600
    await api.chat(model="echo/echo", keep_alive=-1)
    forever = (await api.ps()).models[0].expires_at
    assert forever is not None and forever.year == 9999
    await api.generate(model="echo/echo", keep_alive=30)
    soon = (await api.ps()).models[0].expires_at
    assert soon is not None and 25 < soon.timestamp() - time.time() <= 30
    await api.generate(model="echo/echo")  # no keep_alive: the server's default again
    default = (await api.ps()).models[0].expires_at
    assert default is not None and 290 < default.timestamp() - time.time() <= 300


async def test_ps_context_length_is_what_a_generation_may_use(
    server: Client, api: ollama.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Ollama's num_ctx: the binding's context as loaded (llama.cpp: n_ctx over its slots),
    not the model's trained context, which /api/show still gives."""
    monkeypatch.setattr(probe(server), "context_length", lambda model: 1024)
    await api.chat(model="eye/echo", messages=[{"role": "user", "content": "hi"}])
    [running] = (await api.ps()).models
    assert running.context_length == 1024


async def test_ps_pinned_model_never_expires(make_client: Any, make_config: Any) -> None:
    bindings = {"echo": {"type": "echo", "default_model": "echo"}}
    config = make_config({"bindings": bindings, "resources": {"pinned": ["echo/echo"]}})
    server: Client = await make_client(config)
    async with ollama.AsyncClient(host=str(server.make_url("")), timeout=30) as api:
        messages = [{"role": "user", "content": "hi"}]
        await api.chat(model="echo/echo", messages=messages, keep_alive="1m")
        expires = (await api.ps()).models[0].expires_at
    assert expires is not None and expires.year == 9999


async def test_embed(api: ollama.AsyncClient) -> None:
    result = await api.embed(model="echo/echo", input=["first", "second"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 16
    assert result.embeddings[0] != result.embeddings[1]
    assert math.isclose(sum(x * x for x in result.embeddings[0]), 1.0, rel_tol=1e-6)
    single = await api.embed(model="echo/echo", input="first")
    assert single.embeddings == [result.embeddings[0]]
    short = await api.embed(model="echo/echo", input="first", dimensions=4)
    assert len(short.embeddings[0]) == 4
    assert math.isclose(sum(x * x for x in short.embeddings[0]), 1.0, rel_tol=1e-6)
    assert (await api.embed(model="echo/echo", input=[])).embeddings == []
    assert (await api.embed(model="echo/echo", input="")).embeddings == []  # Ollama's warm-up
    with pytest.raises(ollama.ResponseError) as caught:  # one input, no vector for it: refused
        await api.embed(model="echo/echo", input=["first", ""])
    assert caught.value.status_code == 400 and "empty strings" in caught.value.error
    legacy = await api.embeddings(model="echo/echo", prompt="first")
    assert list(legacy.embedding) == result.embeddings[0]
    with pytest.raises(ollama.ResponseError) as caught:
        await api.embed(model="echo/echo", input="first", dimensions=64)
    assert caught.value.status_code == 400


async def test_errors(server: Client, api: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await api.chat(model="echo/nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404 and "nope" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:  # before the first token: an HTTP error
        async for _ in await api.generate(model="echo/nope", prompt="x", stream=True):
            pass
    assert caught.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as caught:
        await api.generate(model="nosuchinstance/x", prompt="x")
    assert caught.value.status_code == 404
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:  # after it: an {"error"} line
        async for part in await api.generate(model="echo/fail", prompt="a b c", stream=True):
            seen.append(part.response or "")
    assert seen == ["a"] and "fails on purpose" in caught.value.error
    response = await server.post("/api/chat", json={"model": "echo", "options": {"top_k": "x"}})
    assert response.status == 400
    assert set(await response.json()) == {"error"}
    response = await server.post("/api/generate", json={"model": "echo", "keep_alive": "soon"})
    assert response.status == 400 and "keep_alive" in (await response.json())["error"]
    response = await server.post(
        "/api/generate", json={"model": "echo", "prompt": "x", "suffix": "y"}
    )
    assert response.status == 400 and "suffix" in (await response.json())["error"]
    custom = {"model": "echo/echo", "messages": [{"role": "user", "content": "x"}], "stream": False}
    custom["tools"] = [{"type": "custom", "custom": {"name": "x"}}]  # llama.cpp: a 500, a 502
    response = await server.post("/api/chat", json=custom)
    assert response.status == 400
    assert "tools.0: only function tools are served" in (await response.json())["error"]
    response = await server.get("/api/nope")
    assert response.status == 404 and await response.json() == {"error": "no such route"}


async def test_model_management_is_refused(api: ollama.AsyncClient, server: Client) -> None:
    for call in (api.pull("llama3"), api.delete("echo/echo"), api.copy("echo/echo", "x")):
        with pytest.raises(ollama.ResponseError) as caught:
            await call
        assert caught.value.status_code == 501
        assert "configured binding instances" in caught.value.error
    response = await server.post("/api/pull", json={})
    assert response.status == 400  # a body without a model is a bad request first


async def test_client_disconnect_closes_the_binding_stream(server: Client) -> None:
    body = {"model": "eye/slow", "prompt": " ".join(["word"] * 200), "stream": True}
    response = await server.post("/api/generate", json=body)
    assert json.loads(await response.content.readline())["done"] is False
    binding = probe(server)
    assert not binding.closed.is_set()
    response.close()  # drop the connection mid-stream
    await asyncio.wait_for(binding.closed.wait(), 5)


def test_face_of_ollama_paths() -> None:
    assert face_of("/api/chat") == face_of("/api") == face_of("/api/nope") == "ollama"
    assert face_of("/api/v1/generate") == face_of("/api/v1") == "lollms"
    assert face_of("/v1/models") == "openai"
    assert face_of("/") == face_of("/apidocs") == "web"


async def test_explicit_load_and_unload_need_an_admin_key(server: Client) -> None:
    keys = server.server.app[KEYSTORE]
    user, _ = await keys.create("ollama-user", "user")
    admin, _ = await keys.create("ollama-admin", "admin")
    remote = {"Host": "elsewhere.example"}  # not a local request: the key decides
    body = {"model": "echo/echo", "keep_alive": 0}
    for path in ("/api/generate", "/api/chat"):
        headers = {**remote, "Authorization": f"Bearer {user}"}
        response = await server.post(path, json=body, headers=headers)
        assert response.status == 403 and "admin" in (await response.json())["error"]
        response = await server.post(path, json={"model": "echo/echo"}, headers=headers)
        assert response.status == 403
        chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
        response = await server.post(path, json={**chat, "prompt": "hi"}, headers=headers)
        assert response.status == 200  # generating is a user's right
        headers = {**remote, "Authorization": f"Bearer {admin}"}
        response = await server.post(path, json=body, headers=headers)
        assert response.status == 200 and (await response.json())["done_reason"] == "unload"


@pytest.mark.parametrize(
    "keep_alive",
    [10**400, 1e300, "1e300", "nan", "inf", "99999999999h"],
    ids=["10**400", "1e300", "1e300-text", "nan", "inf", "huge-duration"],
)
async def test_keep_alive_beyond_a_date_is_400_and_ps_keeps_working(
    server: Client, keep_alive: Any
) -> None:
    """A keep_alive no date can hold is a 400; before, a user's 10**400 was a 500, and its
    1e300 was accepted and broke `/api/ps` (a 500) for every client while the model stayed."""
    chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/api/chat", "/api/generate"):
        body = {**chat, "prompt": "hi", "stream": False, "keep_alive": keep_alive}
        response = await server.post(path, json=body)
        assert response.status == 400 and "keep_alive" in (await response.json())["error"]
    response = await server.post("/api/chat", json={**chat, "stream": False, "keep_alive": -5})
    assert response.status == 200  # any negative: forever, as Ollama
    response = await server.get("/api/ps")
    assert response.status == 200 and (await response.json())["models"][0]["expires_at"]
