"""The core's contract kit against a real Ollama API (which one: see conftest and the README).

`ollama serve` when the binary is on PATH; otherwise (CI) a second lollms-server process that
serves tiny GGUFs with the llamacpp binding through its Ollama face. Then the chain: a first
lollms-server app with an `ollama` instance pointing at that backend, driven by the official
ollama client and by the lollms API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import ollama
import pytest
from aiohttp.test_utils import TestClient
from lollms_ollama import OllamaBinding

from lollms_server.keys import KEYSTORE
from lollms_server.testing import (
    EmbeddingsContract,
    LifecycleContract,
    ServerContract,
    StreamingContract,
    TextContract,
    UnavailableContract,
    free_port,
    serve_binding,
)

from .conftest import TINY, TINY_EMBED
from .servers import Backend

UPSTREAM = "upstream"


class TestOllama(
    TextContract, StreamingContract, LifecycleContract, ServerContract, EmbeddingsContract
):
    """Text, streams, load/unload, the app round trip and embeddings from the tiny GGUFs."""

    binding_class = OllamaBinding
    model = TINY
    embedding_model = TINY_EMBED
    lifecycle_model = TINY
    stop_sequence = "CLC"  # what the tiny random model writes at temperature 0 (else: skipped)
    text_parameters: ClassVar[Mapping[str, Any]] = {
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": 32,
    }

    @pytest.fixture
    def binding_settings(self, ollama_backend: Backend) -> Mapping[str, Any]:
        """The backend's URL."""
        return {"host": ollama_backend.url, "request_timeout_s": 120}


class TestOllamaDown(UnavailableContract):
    """An instance pointing at a port nobody listens on."""

    binding_class = OllamaBinding
    model = TINY

    @pytest.fixture
    def unavailable_settings(self) -> Mapping[str, Any]:
        """A dead port."""
        return {"host": f"http://127.0.0.1:{free_port()}", "connect_timeout_s": 2}


@pytest.fixture
async def chain(ollama_backend: Backend, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """A first lollms-server app whose `upstream` ollama instance points at the backend."""
    settings = {"host": ollama_backend.url, "request_timeout_s": 120}
    async with serve_binding(OllamaBinding, UPSTREAM, settings, tmp_path / "data") as client:
        yield client


@pytest.fixture
async def chain_api(chain: TestClient[Any, Any]) -> AsyncIterator[ollama.AsyncClient]:
    """The official ollama client on the first app's Ollama face."""
    async with ollama.AsyncClient(host=str(chain.make_url("")), timeout=120) as client:
        yield client


async def test_chain_lists_and_shows(chain_api: ollama.AsyncClient) -> None:
    names = [m.model for m in (await chain_api.list()).models]
    assert f"{UPSTREAM}/{TINY}" in names and f"{UPSTREAM}/{TINY_EMBED}" in names
    listed = next(m for m in (await chain_api.list()).models if m.model == f"{UPSTREAM}/{TINY}")
    assert listed.details is not None and listed.details.family == "llama"
    assert listed.details.quantization_level and listed.details.parameter_size
    shown = await chain_api.show(f"{UPSTREAM}/{TINY}")
    assert "completion" in (shown.capabilities or [])
    assert shown.modelinfo is not None and any(
        k.endswith(".context_length") for k in shown.modelinfo
    )


async def test_chain_chat_and_generate(chain_api: ollama.AsyncClient) -> None:
    model = f"{UPSTREAM}/{TINY}"
    messages = [{"role": "user", "content": "Say hello."}]
    reply = await chain_api.chat(model=model, messages=messages, options={"num_predict": 6})
    assert reply.message.content and reply.done and reply.done_reason == "length"
    assert reply.eval_count == 6 and reply.model == model
    parts = [
        part
        async for part in await chain_api.chat(
            model=model, messages=messages, options={"num_predict": 6}, stream=True
        )
    ]
    assert len([p for p in parts if p.message.content]) >= 2 and parts[-1].done
    generated = await chain_api.generate(model=model, prompt="Once", options={"num_predict": 4})
    assert generated.response and generated.eval_count == 4


async def test_chain_load_ps_unload_and_embed(chain_api: ollama.AsyncClient) -> None:
    model = f"{UPSTREAM}/{TINY}"
    assert (await chain_api.generate(model=model)).done_reason == "load"
    assert model in [m.model for m in (await chain_api.ps()).models]
    assert (await chain_api.generate(model=model, keep_alive=0)).done_reason == "unload"
    assert model not in [m.model for m in (await chain_api.ps()).models]
    embedded = await chain_api.embed(model=f"{UPSTREAM}/{TINY_EMBED}", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and embedded.embeddings[0] != embedded.embeddings[1]
    with pytest.raises(ollama.ResponseError) as caught:
        await chain_api.chat(
            model=f"{UPSTREAM}/lc/nope", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 404


async def test_chain_through_the_lollms_api(chain: TestClient[Any, Any]) -> None:
    body = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": "Hello"}],
        "binding_name": UPSTREAM,
        "model_name": TINY,
        "parameters": {"max_tokens": 5},
    }
    response = await chain.post("/api/v1/generate", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["output"][0]["data"] and answer["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 5
    models = await (await chain.get(f"/api/v1/list_available_models/{UPSTREAM}")).json()
    assert {m["name"] for m in models["models"]} >= {TINY, TINY_EMBED}


async def test_a_user_keys_keep_alive_zero_does_not_unload_the_backends_model(
    chain: TestClient[Any, Any], ollama_backend: Backend
) -> None:
    """The request's keep_alive goes on to Ollama: a user key's 0 is sent as the server's
    keep_alive_s, so the backend keeps the model (before: Ollama unloaded it for everyone)."""
    key, _ = await chain.server.app[KEYSTORE].create("u", "user")
    user = {"X-API-Key": key, "Host": "api.example"}
    body = {"model": f"{UPSTREAM}/{TINY}", "prompt": "x", "stream": False, "keep_alive": 0,
            "options": {"num_predict": 2}}  # fmt: skip
    answer = await chain.post("/api/generate", json=body, headers=user)
    assert answer.status == 200, await answer.text()
    async with ollama.AsyncClient(host=ollama_backend.url, timeout=60) as backend:
        await asyncio.sleep(1.5)  # the backend's reaper runs every 0.5 s
        loaded = [m.model.removesuffix(":latest") for m in (await backend.ps()).models]
        assert TINY.removesuffix(":latest") in loaded
