"""Model processes for real: memory freed on unload, kill -9 mid-stream, recovery, the faces."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from lollms_llamacpp import LlamaCppBinding
from openai import AsyncOpenAI

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.config_sections import ResourcesConfig
from lollms_server.errors import BackendUnavailable, InvalidRequest
from lollms_server.keys import LIFECYCLE, REGISTRY
from lollms_server.testing import serve_binding, started_binding, within
from lollms_server.testing.server import Client

from .conftest import SMOL, TINY, TINY_EMBED

LONG_PROMPT = "Write a long story about a dragon who learns to cook."
TIMEOUT = 60.0


def settings(models_dir: Path) -> dict[str, Any]:
    """The instance's settings over the test models folder."""
    return {
        "models_folders": [str(models_dir)],
        "embedding_models": [TINY_EMBED],
        "n_ctx": 2048,
        "n_parallel": 2,
        "n_threads": 2,
    }


def ask(prompt: str, model: str = SMOL, **parameters: Any) -> GenerationRequest:
    """A one-message chat request."""
    return GenerationRequest("ttt", model, (ChatMessage("user", prompt),), parameters=parameters)


@pytest_asyncio.fixture
async def binding(request: pytest.FixtureRequest, models_dir: Path) -> AsyncIterator[Any]:
    """A started llamacpp instance over the test models."""
    async with started_binding(
        LlamaCppBinding, "local", settings(models_dir), request=request
    ) as started:
        yield started


@pytest_asyncio.fixture
async def client(models_dir: Path, tmp_path: Path) -> AsyncIterator[Client]:
    """The app serving a llamacpp instance called `local`."""
    async with serve_binding(
        LlamaCppBinding, "local", settings(models_dir), tmp_path / "data", default_model=SMOL
    ) as served:
        yield served


def process_of(binding: LlamaCppBinding, model: str) -> psutil.Process:
    """The OS process serving `model`."""
    pid = binding._processes[model].pid
    assert pid is not None
    return psutil.Process(pid)


async def test_unload_ends_the_process(binding: LlamaCppBinding) -> None:
    """load() reports the process's memory; unload() makes the process disappear."""
    used = await within(TIMEOUT, binding.load(TINY), "load")
    process = process_of(binding, TINY)
    assert used is not None and used > 1_000_000
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    info = {m.name: m for m in await binding.list_models()}[TINY]
    assert info.loaded and info.memory_bytes is not None and info.memory_bytes > 1_000_000
    await within(TIMEOUT, binding.unload(TINY), "unload")
    assert not psutil.pid_exists(process.pid)
    assert not {m.name: m for m in await binding.list_models()}[TINY].loaded


async def test_generate_loads_on_demand(binding: LlamaCppBinding) -> None:
    """A request for a model that is not loaded loads it, then it shows as loaded."""
    result = await within(TIMEOUT, binding.generate(ask("hi", TINY, max_tokens=5)), "generate")
    assert result.finish_reason == "length" and result.usage is not None
    assert result.usage.completion_tokens == 5
    assert {m.name: m for m in await binding.list_models()}[TINY].loaded


async def test_kill_mid_stream_then_recover(binding: LlamaCppBinding) -> None:
    """kill -9 mid-stream: a 503 naming the model, health down, the next request restarts it."""
    stream = binding.stream(ask(LONG_PROMPT, max_tokens=400))
    await within(TIMEOUT, anext(stream), "the first chunk")
    victim = process_of(binding, SMOL)
    victim.send_signal(signal.SIGKILL)
    with pytest.raises(BackendUnavailable) as caught:
        async for _chunk in stream:
            pass
    assert SMOL in caught.value.message and "died" in caught.value.message
    assert caught.value.binding == "local"
    health = await binding.health()
    assert health.state == "down" and SMOL in health.detail
    result = await within(TIMEOUT, binding.generate(ask("Say hi.", max_tokens=8)), "generate")
    assert result.outputs[0].text.strip()
    assert process_of(binding, SMOL).pid != victim.pid
    assert (await binding.health()).state == "up"


async def test_parallel_requests_share_one_process(binding: LlamaCppBinding) -> None:
    """Two requests at once are both answered by the same process (n_parallel slots)."""
    await binding.load(SMOL)
    pid = binding._processes[SMOL].pid
    both = asyncio.gather(
        binding.generate(ask("Name a colour.", max_tokens=12)),
        binding.generate(ask("Name a fruit.", max_tokens=12)),
    )
    first, second = await within(TIMEOUT, both, "two parallel requests")
    assert first.outputs[0].text.strip() and second.outputs[0].text.strip()
    assert binding._processes[SMOL].pid == pid


async def test_tokenizer_round_trip(binding: LlamaCppBinding) -> None:
    """Tokens come from the model's tokenizer and detokenize back; bad ids are a 400."""
    tokens = await binding.tokenize("Hello world", SMOL)
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert await binding.detokenize(tokens, SMOL) == "Hello world"
    with pytest.raises(InvalidRequest):
        await binding.detokenize([10_000_000], SMOL)


async def test_embed_needs_an_embedding_model(binding: LlamaCppBinding) -> None:
    """embed() on a chat model says how to make it an embedding model."""
    with pytest.raises(InvalidRequest, match="embedding_models"):
        await binding.embed(["x"], TINY)


async def test_kill_mid_stream_through_the_app(client: Client) -> None:
    """The lollms API streams an error event naming the model, then the next request works."""
    body = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": LONG_PROMPT}],
        "binding_name": "local",
        "model_name": SMOL,
        "stream": True,
        "parameters": {"max_tokens": 400},
    }
    binding = client.app[REGISTRY].get("local")
    assert isinstance(binding, LlamaCppBinding)
    response = await client.post("/api/v1/generate", json=body)
    assert response.status == 200
    events: list[dict[str, Any]] = []

    async def read_until_chunk() -> None:
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "chunk":
                    return

    await within(TIMEOUT, read_until_chunk(), "the first streamed chunk")
    process_of(binding, SMOL).send_signal(signal.SIGKILL)
    rest = await within(TIMEOUT, response.text(), "the rest of the stream")
    events += [json.loads(line[6:]) for line in rest.splitlines() if line.startswith("data: ")]
    kinds = [event["type"] for event in events]
    assert "error" in kinds and kinds[-1] == "final", kinds
    error = next(event for event in events if event["type"] == "error")
    assert SMOL in error["content"] and error["metadata"]["error"]["binding"] == "local"
    short = {**body, "stream": False, "parameters": {"max_tokens": 8}}
    again = await client.post("/api/v1/generate", json=short)
    assert again.status == 200, await again.text()
    assert (await again.json())["output"][0]["data"].strip()


async def test_tokenize_endpoints(client: Client) -> None:
    """/api/v1/tokenize, detokenize and count_tokens use the model's tokenizer."""
    target = {"binding_name": "local", "model_name": SMOL}
    response = await client.post("/api/v1/tokenize", json={**target, "text": "Hello world"})
    assert response.status == 200, await response.text()
    tokens = (await response.json())["tokens"]
    response = await client.post("/api/v1/detokenize", json={**target, "tokens": tokens})
    assert (await response.json())["text"] == "Hello world"
    response = await client.post("/api/v1/count_tokens", json={**target, "text": "Hello world"})
    assert (await response.json())["count"] == len(tokens)


async def test_openai_sdk_chats_through_the_server(client: Client) -> None:
    """The openai SDK, through lollms-server's /v1, chats with SmolLM2: whole and streamed."""
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    model = f"local/{SMOL}"
    messages: Any = [{"role": "user", "content": "Say hello in five words."}]
    answer = await within(
        TIMEOUT,
        sdk.chat.completions.create(model=model, messages=messages, max_tokens=16),
        "chat",
    )
    assert answer.choices[0].message.content and answer.choices[0].message.content.strip()
    assert answer.usage is not None and 1 <= answer.usage.completion_tokens <= 16
    stream = await sdk.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert usage is not None and usage.completion_tokens >= len(pieces) - 1
    listed = [m.id async for m in sdk.models.list()]
    assert model in listed and f"local/{TINY}" in listed
    await sdk.close()


async def test_lifecycle_keeps_one_model_resident(models_dir: Path, tmp_path: Path) -> None:
    """With room for one model, alternating requests swap the llama.cpp processes: the
    previous model's process is gone before the next one runs; keep_alive 0 unloads."""
    resources = ResourcesConfig(max_loaded_models=1)
    async with serve_binding(
        LlamaCppBinding, "local", settings(models_dir), tmp_path / "data", SMOL, resources
    ) as served:
        binding = served.app[REGISTRY].get("local")
        assert isinstance(binding, LlamaCppBinding)
        seen: dict[str, int] = {}
        for model in (TINY, SMOL, TINY, SMOL):
            body = {
                "input_data": [{"type": "text", "data": "Say hi."}],
                "model_name": model,
                "parameters": {"max_tokens": 4},
            }
            response = await within(TIMEOUT, served.post("/api/v1/generate", json=body), model)
            assert response.status == 200, await response.text()
            assert set(binding._processes) == {model}  # never both resident
            pid = process_of(binding, model).pid
            assert pid != seen.get(model)  # a fresh process: the last one was unloaded
            seen[model] = pid
        lifecycle = served.app[LIFECYCLE]
        assert lifecycle.loads == 4 and lifecycle.evictions == 3
        last = process_of(binding, SMOL)
        body = {
            "input_data": [{"type": "text", "data": "Bye."}],
            "model_name": SMOL,
            "parameters": {"max_tokens": 2, "keep_alive": 0},
        }
        assert (await served.post("/api/v1/generate", json=body)).status == 200
        await lifecycle.reap()
        assert not binding._processes
        assert not last.is_running() or last.status() == psutil.STATUS_ZOMBIE


async def test_ollama_client_chats_through_the_ollama_face(client: Client) -> None:
    """The official ollama client, through lollms-server's Ollama face, chats with SmolLM2."""
    import ollama

    sdk = ollama.AsyncClient(host=str(client.make_url("")).rstrip("/"))
    model = f"local/{SMOL}"
    messages = [{"role": "user", "content": "Say hello in five words."}]
    options = {"num_predict": 16, "temperature": 0}
    answer = await within(
        TIMEOUT, sdk.chat(model=model, messages=messages, options=options), "ollama chat"
    )
    assert (answer.message.content or "").strip() and answer.done
    assert answer.eval_count is not None and 1 <= answer.eval_count <= 16
    pieces: list[str] = []
    final = None
    async for part in await sdk.chat(model=model, messages=messages, options=options, stream=True):
        if part.message.content:
            pieces.append(part.message.content)
        if part.done:
            final = part
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert final is not None and final.done_reason in ("stop", "length")
    tags = [m.model for m in (await sdk.list()).models]
    assert f"{model}:latest" in tags or model in tags


async def test_unload_during_a_stream_says_so(binding: LlamaCppBinding) -> None:
    """Unloading a model mid-stream ends that stream with a 503 that says it was unloaded."""
    stream = binding.stream(ask(LONG_PROMPT, max_tokens=400))
    await within(TIMEOUT, anext(stream), "the first chunk")
    await within(TIMEOUT, binding.unload(SMOL), "unload")
    with pytest.raises(BackendUnavailable, match="unloaded"):
        async for _chunk in stream:
            pass
    assert (await binding.health()).state == "up"
