"""The real `lollms-client` library's `lollms` binding against a real server process serving
SmolLM2 through llama.cpp: text whole and streamed, the model's own tokenizer and context."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_client import LollmsClient

from lollms_server.testing.process import (
    ServerProcess,
    lollms_process,
    request_count,
    toml_table,
)

from .conftest import SMOL

N_CTX = 2048


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose default text model is SmolLM2 on llama.cpp."""
    binding = {
        "type": "llamacpp",
        "models_folders": [str(models_dir)],
        "n_ctx": N_CTX,
        "n_parallel": 1,
        "n_threads": 2,
    }
    config = toml_table("bindings.local", binding) + "\n[defaults]\n"
    config += f"ttt = {json.dumps('local/' + SMOL)}\n"
    with lollms_process(tmp_path_factory.mktemp("lollms-client"), config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> LollmsClient:
    """`LollmsClient(llm_binding_name="lollms")`, model auto-detected from `/v1/models`."""
    return LollmsClient(
        llm_binding_name="lollms",
        llm_binding_config={"host_address": server.url, "model_name": f"local/{SMOL}"},
    )


def test_text_whole_and_streamed(server: ServerProcess, client: LollmsClient) -> None:
    whole = client.generate_text("Say hello.", n_predict=8, temperature=0.0, seed=1)
    assert isinstance(whole, str) and whole.strip()
    seen: list[str] = []

    def callback(chunk: str, kind: Any = None, *args: Any, **kwargs: Any) -> bool:
        seen.append(chunk)
        return True

    streamed = client.generate_text(
        "Say hello.", n_predict=8, temperature=0.0, seed=1, stream=True, streaming_callback=callback
    )
    assert isinstance(streamed, str) and streamed.strip() and len(seen) >= 2
    assert "".join(seen).strip() == streamed.strip()
    # the library's chat_template_kwargs / thinking went to llama.cpp without a 400 or a retry
    assert request_count(server.log(), "POST", "/v1/chat/completions", 400) == 0
    # a stream's log line is written once its answer has ended, which the client may see first
    deadline = time.monotonic() + 10
    while request_count(server.log(), "POST", "/v1/chat/completions") < 2:
        assert time.monotonic() < deadline, "fewer than 2 chat requests in the log"
        time.sleep(0.05)


def test_tokenizer_and_context_are_the_models(client: LollmsClient) -> None:
    tokens = client.tokenize("Hello world")
    assert 1 <= len(tokens) <= 4 and all(isinstance(t, int) for t in tokens)
    assert client.detokenize(tokens) == "Hello world"
    assert client.llm._get_ctx_size(f"local/{SMOL}") == N_CTX  # not the library's 4096 guess
