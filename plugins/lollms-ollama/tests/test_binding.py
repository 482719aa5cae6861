"""OllamaBinding against a second lollms-server process serving echo through its Ollama face."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from lollms_ollama import OllamaBinding

from lollms_server.bindings import ChatMessage, Chunk, GenerationRequest, InputItem, Output
from lollms_server.builtin import tiny_media
from lollms_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
    NotSupported,
)
from lollms_server.testing import free_port, modules_imported_by, started_binding

from .servers import Backend, launch_lollms_server, server_env, write_config

PNG = tiny_media.png(tiny_media.gradient(4, 4, 7))
CLI = (sys.executable, "-m", "lollms_server.cli")


def request(
    model: str, prompt: str, *, images: tuple[InputItem, ...] = (), raw: bool = False, **params: Any
) -> GenerationRequest:
    return GenerationRequest(
        generation_type="ttt",
        model=model,
        messages=(ChatMessage("user", prompt, images),),
        parameters=params,
        raw_prompt=raw,
    )


def text_of(outputs: tuple[Output, ...]) -> str:
    return "".join(o.text for o in outputs if o.type == "text")


@pytest.fixture
async def binding(echo_backend: Backend) -> AsyncIterator[OllamaBinding]:
    async with started_binding(OllamaBinding, "up", {"host": echo_backend.url}) as started:
        assert isinstance(started, OllamaBinding)
        yield started


async def test_health(binding: OllamaBinding) -> None:
    health = await binding.health()
    assert health.state == "up" and "ollama 0." in health.detail
    assert health.latency_ms is not None and health.latency_ms >= 0


async def test_list_models_with_details(binding: OllamaBinding) -> None:
    models = {m.name: m for m in await binding.list_models()}
    assert len(models) == 8 and "echo/echo:latest" in models and "eye/slow:latest" in models
    echo = models["echo/echo:latest"]
    assert echo.family == "echo" and echo.context_length == 4096 and not echo.loaded
    assert echo.capabilities == {"ttt", "embeddings"}  # from /api/show
    assert "vision" in models["eye/echo:latest"].capabilities
    assert len(echo.details["digest"]) == 64 and echo.details["families"] == ["echo"]
    assert echo.details["modified_at"].endswith("Z")


async def test_allow_list(echo_backend: Backend) -> None:
    settings = {"host": echo_backend.url, "models": ["echo/echo", "eye/think:latest"]}
    async with started_binding(OllamaBinding, "picky", settings) as binding:
        names = {m.name for m in await binding.list_models()}
        assert names == {"echo/echo:latest", "eye/think:latest"}
        result = await binding.generate(request("echo/echo:latest", "allowed"))
        assert text_of(result.outputs) == "allowed"
        with pytest.raises(ModelNotFound) as caught:
            await binding.generate(request("echo/slow", "x"))
        assert caught.value.binding == "picky" and "allow" in caught.value.message


async def test_generate_stream_and_parameters(binding: OllamaBinding) -> None:
    result = await binding.generate(request("echo/echo", "one two three"))
    assert text_of(result.outputs) == "one two three" and result.finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 3
    short = await binding.generate(request("echo/echo", "one two three", max_tokens=2))
    assert text_of(short.outputs) == "one two" and short.finish_reason == "length"
    stopped = await binding.generate(request("echo/echo", "one two STOP three", stop=["STOP"]))
    assert text_of(stopped.outputs).strip() == "one two"
    async with aclosing(binding.stream(request("echo/echo", "a b c d"))) as stream:
        chunks = [chunk async for chunk in stream]
    assert "".join(c.content for c in chunks) == "a b c d"
    assert len([c for c in chunks if c.content]) == 4
    assert chunks[-1].usage is not None and chunks[-1].finish_reason == "stop"
    raw = await binding.generate(request("echo/echo", "raw text", raw=True))
    assert text_of(raw.outputs) == "raw text"


async def test_thoughts(binding: OllamaBinding) -> None:
    result = await binding.generate(request("echo/think", "why"))
    assert result.outputs[0].text == "why"
    assert result.outputs[0].thoughts == "The user said: why"
    async with aclosing(binding.stream(request("echo/think", "why"))) as stream:
        chunks = [chunk async for chunk in stream]
    assert "".join(c.thoughts for c in chunks) == "The user said: why"


async def test_images_arrive_intact(binding: OllamaBinding) -> None:
    image = InputItem("image", role="input_image", data=PNG, mime_type="image/png")
    result = await binding.generate(request("eye/echo", "what", images=(image,)))
    digest = hashlib.sha256(PNG).hexdigest()[:12]
    assert text_of(result.outputs) == f"saw image/png:{digest} what"
    raw = await binding.generate(request("eye/echo", "and", images=(image,), raw=True))
    assert text_of(raw.outputs) == f"saw image/png:{digest} and"
    with pytest.raises(NotSupported) as caught:  # echo has no vision: the backend's 501
        await binding.generate(request("echo/echo", "what", images=(image,)))
    assert caught.value.binding == "up" and "vision" in caught.value.message


async def test_embeddings(binding: OllamaBinding) -> None:
    vectors = await binding.embed(["first", "second", "first"], "echo/echo")
    assert len(vectors) == 3 and len(vectors[0]) == 16 and vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)


async def test_load_and_unload(binding: OllamaBinding) -> None:
    for _ in range(2):
        used = await binding.load("echo/slow:latest")
        assert used is None or used >= 0
    models = {m.name: m for m in await binding.list_models()}
    assert models["echo/slow:latest"].loaded
    assert models["echo/slow:latest"].details["expires_at"]
    for _ in range(2):
        await binding.unload("echo/slow")
    models = {m.name: m for m in await binding.list_models()}
    assert not models["echo/slow:latest"].loaded
    with pytest.raises(ModelNotFound):
        await binding.load("echo/nope")


async def test_errors_name_the_instance(binding: OllamaBinding) -> None:
    with pytest.raises(ModelNotFound) as missing:
        await binding.generate(request("echo/nope", "x"))
    assert missing.value.binding == "up" and "'nope'" in missing.value.message
    seen: list[str] = []
    with pytest.raises(BackendError) as failed:  # an error line after the first token
        async with aclosing(binding.stream(request("echo/fail", "a b c"))) as stream:
            async for chunk in stream:
                seen.append(chunk.content)
    assert seen == ["a"] and failed.value.binding == "up"
    assert "fails on purpose" in failed.value.message


async def test_pull_through_the_face_is_refused(echo_backend: Backend) -> None:
    settings = {"host": echo_backend.url, "auto_pull": True}
    async with started_binding(OllamaBinding, "puller", settings) as binding:
        assert isinstance(binding, OllamaBinding)
        with pytest.raises(NotSupported) as caught:
            async with aclosing(binding.pull("echo/echo")) as progress:
                _ = [info async for info in progress]
        assert caught.value.binding == "puller" and caught.value.status == 501
        with pytest.raises(NotSupported):  # a missing model: auto_pull tries, the face refuses
            await binding.generate(request("echo/nope", "x"))
        result = await binding.generate(request("echo/echo", "present"))
        assert text_of(result.outputs) == "present"


async def test_closing_a_stream_early_releases_it(binding: OllamaBinding) -> None:
    long = request("echo/slow", " ".join(["word"] * 200))
    stream = binding.stream(long)
    first = await asyncio.wait_for(anext(stream), 10)
    assert isinstance(first, Chunk) and first.content
    started = time.monotonic()
    await asyncio.wait_for(stream.aclose(), 5)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2
    after = await asyncio.wait_for(binding.generate(request("echo/echo", "still here")), 10)
    assert text_of(after.outputs) == "still here"


async def test_dead_backend_fails_fast() -> None:
    settings = {"host": f"127.0.0.1:{free_port()}", "connect_timeout_s": 2}
    async with started_binding(OllamaBinding, "gone", settings, expect_down=True) as binding:
        started = time.monotonic()
        health = await binding.health()
        assert health.state == "down" and "gone" in health.detail
        with pytest.raises(BackendUnavailable) as caught:
            await binding.list_models()
        assert caught.value.binding == "gone" and caught.value.status == 503
        with pytest.raises(BackendUnavailable):
            await binding.generate(request("x", "y"))
        with pytest.raises(BackendUnavailable):
            async with aclosing(binding.stream(request("x", "y"))) as stream:
                await anext(stream)
        assert time.monotonic() - started < 5


async def test_hung_backend_times_out() -> None:
    """A backend that accepts connections but never answers: down and 504s, never a hang."""

    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = {"host": f"127.0.0.1:{port}", "request_timeout_s": 1, "health_timeout_s": 1}
    try:
        async with started_binding(OllamaBinding, "hung", settings, expect_down=True) as binding:
            started = time.monotonic()
            health = await binding.health()
            assert health.state == "down" and "hung" in health.detail
            with pytest.raises(BackendTimeout) as caught:
                await binding.list_models()
            assert caught.value.binding == "hung" and caught.value.status == 504
            assert time.monotonic() - started < 5
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def create_key(config: Path, folder: Path) -> str:
    """A user key made with `lollms-server keys create` (skips if the core has no such command)."""
    done = subprocess.run(
        [*CLI, "--config", str(config), "keys", "create", "--name", "ollama-test"],
        env=server_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"lollms_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", done.stdout)
    if done.returncode != 0 or match is None:
        pytest.skip(f"this lollms-server cannot create API keys: {done.stderr[-300:]}")
    return match.group(0)


async def test_headers_are_sent_and_masked(tmp_path: Path) -> None:
    keyed = "\n[security]\nlocal_access = false\n"  # a key is needed even from 127.0.0.1
    config, port = write_config(tmp_path, {"echo": {"type": "echo"}}, keyed)
    key = create_key(config, tmp_path)
    backend = launch_lollms_server(tmp_path, config, port)
    try:
        async with started_binding(
            OllamaBinding, "nokey", {"host": backend.url}, expect_down=True
        ) as anonymous:
            assert (await anonymous.health()).state == "down"
            with pytest.raises(BackendError) as caught:
                await anonymous.list_models()
            assert "401" in caught.value.message
        settings = {"host": backend.url, "headers": {"Authorization": f"Bearer {key}"}}
        async with started_binding(OllamaBinding, "keyed", settings) as binding:
            assert (await binding.health()).state == "up"
            assert "echo/echo:latest" in {m.name for m in await binding.list_models()}
            shown = binding.public_settings()
            assert shown["headers"] == {"Authorization": "***"} and key not in repr(shown)
    finally:
        backend.stop()


def test_registering_the_plugin_does_not_import_the_client() -> None:
    """The server starts fast: the ollama client (httpx, pydantic) loads on first use only."""
    code = "import lollms_ollama.plugin as p; p.register_bindings()"
    assert modules_imported_by(code, ("ollama", "httpx")) == []


async def test_a_request_without_max_tokens_gets_the_default_cap(
    echo_backend: Backend, tmp_path: Path
) -> None:
    """The instance's default_max_tokens reaches Ollama as num_predict (a real Ollama face)."""
    from lollms_server.keys import REGISTRY
    from lollms_server.testing import serve_binding

    async with serve_binding(OllamaBinding, "ol", {"host": echo_backend.url}, tmp_path) as client:
        client.app[REGISTRY].get("ol").default_max_tokens = 3
        prompt = "one two three four five six seven"
        body = {"model": "ol/echo/echo:latest", "messages": [{"role": "user", "content": prompt}]}
        answer = await (await client.post("/v1/chat/completions", json=body)).json()
    assert answer["choices"][0]["finish_reason"] == "length", answer
    assert answer["usage"]["completion_tokens"] == 3
