"""A prompt that cannot fit a slot is refused before llama.cpp tokenizes it (tokenizing
megabytes held the model for seconds before its 400); one that may fit goes through."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_llamacpp.models import most_chars, prompt_chars, slot_tokens

from lollms_server.sdk import ChatMessage, GenerationRequest, ToolCall
from lollms_server.testing.process import ServerProcess, lollms_process, toml_table

from .conftest import TINY

SLOT = 96
LONGEST = len("\u2581lollms".encode())  # the tiny vocabulary's longest token


def call(server: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Status and JSON answer of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url + path, data, {"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One instance `narrow` with a SLOT-token slot."""
    settings = {
        "type": "llamacpp",
        "models_folders": [str(tiny_models)],
        "n_threads": 2,
        "n_ctx": SLOT,
        "n_parallel": 1,
        "default_model": TINY,
        "default_max_tokens": 4,
    }
    with lollms_process(
        tmp_path_factory.mktemp("bound"), toml_table("bindings.narrow", settings)
    ) as running:
        yield running


def test_unfittable_prompt_refused_before_loading(server: ServerProcess) -> None:
    prompt = "a" * (most_chars(slot_tokens(SLOT, 1), LONGEST) + 1)
    for path, body in [
        ("/v1/chat/completions", {"model": f"narrow/{TINY}", "messages": [
            {"role": "user", "content": prompt}]}),
        ("/v1/completions", {"model": f"narrow/{TINY}", "prompt": prompt}),
        ("/api/chat", {"model": f"narrow/{TINY}", "stream": False, "messages": [
            {"role": "user", "content": prompt}]}),
    ]:  # fmt: skip
        status, answer = call(server, "POST", path, body)
        assert status == 400, (path, answer)
        message = json.dumps(answer)
        assert "context_length_exceeded" in message or "context length" in message, answer
        assert f"{len(prompt)} characters" in message, answer  # our bound, not llama.cpp's


def test_long_prompt_that_may_fit_is_answered(server: ServerProcess) -> None:
    """More characters than the configured slot has tokens, fewer than llama.cpp's padded slot
    has: the bound lets it through and llama.cpp answers it."""
    prompt = "a" * (SLOT + 10)
    status, answer = call(
        server,
        "POST",
        "/v1/chat/completions",
        {"model": f"narrow/{TINY}", "messages": [{"role": "user", "content": prompt}]},
    )
    assert status == 200, answer
    assert SLOT < answer["usage"]["prompt_tokens"] < slot_tokens(SLOT, 1)


def test_prompt_chars_counts_what_a_template_renders() -> None:
    """Messages, tool calls (name and arguments) and tool definitions all count."""
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 50}}
    request = GenerationRequest(
        "ttt",
        TINY,
        messages=(
            ChatMessage("user", "abc"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("1", "look", {"q": "xyz"}),)),
        ),
        parameters={"tools": [tool]},
    )
    tool_chars = sum(len(s) for s in ("type", "function", "function", "name", "f", "description"))
    assert prompt_chars(request) == 3 + len("look") + len("q") + 3 + tool_chars + 50
