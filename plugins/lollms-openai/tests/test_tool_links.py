"""Tool results that name their function, not their call, reach an OpenAI-compatible provider
linked to the call they answer: the provider refuses a `tool` message whose `tool_call_id` is
no call of the assistant message before it (OpenAI's 400), as `standin.py` does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_openai import OpenAIBinding

from lollms_server.testing import free_port, serve_binding, wait_for_http

from .test_recipes import STANDIN, recorded

MODEL = "qwen2.5-7b-instruct"
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("get_weather", "get_time")
]


@pytest.fixture
def provider() -> Iterator[str]:
    """A stand-in of LM Studio (no key) on loopback: its address."""
    port = free_port()
    command = [sys.executable, str(STANDIN), "--provider", "lmstudio", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        address = f"http://127.0.0.1:{port}"
        if not wait_for_http(f"{address}/__recorded", timeout_s=30):
            process.kill()
            raise AssertionError(process.communicate()[1].decode(errors="replace")[-2000:])
        yield address
    finally:
        process.terminate()
        process.wait(10)


def linked(sent: dict[str, Any]) -> list[tuple[str, str]]:
    """(call id, function name) of each tool message the provider got, through its call."""
    names: dict[str, str] = {}
    links = []
    for message in sent["messages"]:
        for call in message.get("tool_calls") or ():
            names[call["id"]] = call["function"]["name"]
        if message["role"] == "tool":
            links.append((message["tool_call_id"], names.get(message["tool_call_id"], "")))
    return links


async def test_tool_results_named_by_function_reach_the_provider_linked(
    provider: str, tmp_path: Path
) -> None:
    """Ollama's `tool_name` (two calls, answered in order) and OpenAI's deprecated `function`
    role: each result goes on with the id of the call it answers; before, with the function's
    name as `tool_call_id`, which the provider refused (400)."""
    settings = {"base_url": f"{provider}/v1", "check_models": False}
    ollama_chat = {
        "model": f"lms/{MODEL}",
        "stream": False,
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "get_time", "arguments": {"city": "Paris"}}},
                ],
            },
            {"role": "tool", "tool_name": "get_time", "content": "noon"},
            {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
        ],
    }
    legacy_chat = {
        "model": f"lms/{MODEL}",
        "functions": [tool["function"] for tool in TOOLS],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"role": "function", "name": "get_weather", "content": "sunny"},
        ],
    }
    async with serve_binding(OpenAIBinding, "lms", settings, tmp_path / "data") as client:
        answer = await client.post("/api/chat", json=ollama_chat)
        assert answer.status == 200, await answer.text()
        answer = await client.post("/v1/chat/completions", json=legacy_chat)
        assert answer.status == 200, await answer.text()
    chats = [r["body"] for r in await recorded(provider) if r["path"].endswith("/completions")]
    assert [linked(sent) for sent in chats] == [
        [(chats[0]["messages"][1]["tool_calls"][1]["id"], "get_time"),
         (chats[0]["messages"][1]["tool_calls"][0]["id"], "get_weather")],
        [(chats[1]["messages"][1]["tool_calls"][0]["id"], "get_weather")],
    ]  # fmt: skip
