"""No generation runs unbounded: a request without max_tokens stops at the instance's default
cap, never past the slot's context (a real server process with real llama.cpp workers)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lollms_server.testing.process import ServerProcess, lollms_process, toml_table

from .conftest import TINY

CAP = 24
SMALL_CTX = 96


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON, return the JSON answer (60 s at most: before the fix this hung for 300 s)."""
    request = urllib.request.Request(
        server.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        answer: dict[str, Any] = json.load(reply)
        return answer


@pytest.fixture(scope="module")
def server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`capped`: default_max_tokens = CAP; `narrow`: the default cap, but a SMALL_CTX slot."""
    common = {"models_folders": [str(tiny_models)], "n_threads": 2, "default_model": TINY}
    config = (
        toml_table("bindings.capped", {"type": "llamacpp", **common, "default_max_tokens": CAP})
        + toml_table(
            "bindings.narrow", {"type": "llamacpp", **common, "n_ctx": SMALL_CTX, "n_parallel": 1}
        )
        + toml_table("defaults", {"ttt": "capped"})
    )
    with lollms_process(tmp_path_factory.mktemp("cap"), config) as running:
        yield running


def chat(prompt: str = "hello") -> list[dict[str, str]]:
    """One user message."""
    return [{"role": "user", "content": prompt}]


def test_every_face_stops_at_the_default_cap(server: ServerProcess) -> None:
    lollms = post(server, "/api/v1/generate", {"input_data": [{"type": "text", "data": "hello"}]})
    assert lollms["finish_reason"] == "length"
    assert lollms["usage"]["completion_tokens"] == CAP
    openai = post(server, "/v1/chat/completions", {"model": f"capped/{TINY}", "messages": chat()})
    assert openai["choices"][0]["finish_reason"] == "length"
    assert openai["usage"]["completion_tokens"] == CAP
    ollama = post(
        server,
        "/api/chat",
        {"model": f"capped/{TINY}", "messages": chat(), "stream": False,
         "options": {"num_predict": -1}},
    )  # fmt: skip
    assert ollama["done_reason"] == "length" and ollama["eval_count"] == CAP


def test_a_request_max_tokens_wins(server: ServerProcess) -> None:
    body = {"model": f"capped/{TINY}", "messages": chat(), "max_tokens": CAP + 8}
    answer = post(server, "/v1/chat/completions", body)
    assert answer["usage"]["completion_tokens"] == CAP + 8


def test_the_cap_never_passes_the_context(server: ServerProcess) -> None:
    answer = post(server, "/v1/chat/completions", {"model": f"narrow/{TINY}", "messages": chat()})
    assert answer["choices"][0]["finish_reason"] == "length"
    assert 0 < answer["usage"]["completion_tokens"] <= SMALL_CTX
