"""An embeddings request for a model the binding lists without the `embeddings` capability
(SmolLM2, a chat model not in `embedding_models`) is refused before the model loads: a real
server process, the OpenAI and Ollama faces, the model's llama.cpp server never started."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lollms_server.testing.process import ServerProcess, lollms_process, toml_table

from .conftest import SMOL, TINY_EMBED


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SmolLM2 and the tiny embedding model on llama.cpp."""
    binding = {"type": "llamacpp", "models_folders": [str(models_dir)], "n_ctx": 512}
    binding |= {"n_parallel": 1, "n_threads": 1, "embedding_models": [TINY_EMBED]}
    with lollms_process(
        tmp_path_factory.mktemp("embed"), toml_table("bindings.local", binding)
    ) as running:
        yield running


def loaded(server: ServerProcess) -> list[str]:
    """The models the server has loaded or is loading."""
    status = httpx.get(f"{server.url}/api/v1/status", timeout=30).json()
    return [*status["loaded"], *status["loading"]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": f"local/{SMOL}", "input": ["hello"]}),
        ("/api/embed", {"model": f"local/{SMOL}", "input": "hello"}),
    ],
    ids=["openai", "ollama"],
)
def test_a_model_listed_without_embeddings_is_refused_before_it_loads(
    server: ServerProcess, path: str, body: dict[str, object]
) -> None:
    assert f"local/{SMOL}" not in loaded(server)
    started = time.monotonic()
    answer = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    assert "embedding" in answer.text and SMOL in answer.text, answer.text
    assert f"local/{SMOL}" not in loaded(server), f"loaded to be refused (took {took:.2f} s)"
    assert took < 1.0, took


def test_an_embedding_model_and_a_loaded_chat_model(server: ServerProcess) -> None:
    """The embedding model embeds; SmolLM2 loaded for a chat is still refused (by the binding)."""
    answer = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": f"local/{TINY_EMBED}", "input": ["hello"]},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"][0]["embedding"]) > 0
    chat = {"model": f"local/{SMOL}", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(
        f"{server.url}/v1/chat/completions", json=chat | {"max_tokens": 2}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert f"local/{SMOL}" in loaded(server)
    answer = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": f"local/{SMOL}", "input": ["x"]}, timeout=60
    )
    assert answer.status_code == 400, answer.text
