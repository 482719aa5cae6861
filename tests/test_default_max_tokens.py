"""The default cap of text generations: `[bindings.x] default_max_tokens`, on every face."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import DEFAULT_MAX_TOKENS
from lollms_server.keys import REGISTRY
from lollms_server.registry import Target

Client = TestClient[Any, Any]
CAP = 3
PROMPT = "one two three four five six seven eight"


@pytest.fixture
async def capped(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """`echo` capped at CAP tokens by default; `wide` keeps the built-in default."""
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "default_max_tokens": CAP},
                "wide": {"type": "echo", "default_model": "echo"},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    return await make_client(config)


def chat(**extra: Any) -> dict[str, Any]:
    """An OpenAI/Ollama chat body for the capped instance."""
    return {"model": "echo/echo", "messages": [{"role": "user", "content": PROMPT}], **extra}


async def test_lollms_face_caps_a_request_without_max_tokens(capped: Client) -> None:
    body = {"input_data": [{"type": "text", "data": PROMPT}]}
    answer = await (await capped.post("/api/v1/generate", json=body)).json()
    assert answer["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == CAP
    streamed = await capped.post("/api/v1/generate", json={**body, "stream": True})
    events = [json.loads(x[6:]) for x in (await streamed.text()).splitlines() if x[:6] == "data: "]
    assert events[-1]["type"] == "final" and events[-1]["metadata"]["finish_reason"] == "length"


async def test_openai_face_caps_streamed_and_not(capped: Client) -> None:
    answer = await (await capped.post("/v1/chat/completions", json=chat())).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == CAP
    streamed = await capped.post("/v1/chat/completions", json=chat(stream=True))
    text = await streamed.text()
    assert '"finish_reason": "length"' in text or '"finish_reason":"length"' in text


async def test_ollama_face_caps_an_unbounded_num_predict(capped: Client) -> None:
    body = chat(stream=False, options={"num_predict": -1})
    answer = await (await capped.post("/api/chat", json=body)).json()
    assert answer["done_reason"] == "length" and answer["eval_count"] == CAP


async def test_a_request_limit_wins_and_other_instances_keep_theirs(capped: Client) -> None:
    answer = await (await capped.post("/v1/chat/completions", json=chat(max_tokens=5))).json()
    assert answer["usage"]["completion_tokens"] == 5
    wide = await (await capped.post("/v1/chat/completions", json=chat(model="wide/echo"))).json()
    assert wide["choices"][0]["finish_reason"] == "stop"
    registry = capped.app[REGISTRY]
    assert Target(registry.get("echo"), "echo").default_max_tokens == CAP
    assert Target(registry.get("wide"), "echo").default_max_tokens == DEFAULT_MAX_TOKENS


def test_default_max_tokens_is_validated(make_config: MakeConfig) -> None:
    from lollms_server.errors import ConfigError

    with pytest.raises(ConfigError, match="default_max_tokens"):
        make_config({"bindings": {"echo": {"type": "echo", "default_max_tokens": 0}}})
