"""Errors before the first byte are HTTP statuses on every face; fallback streams name the
target that served."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
CHAT = {"messages": [{"role": "user", "content": "hello there"}], "stream": True}


def config(make_config: Any, **resources: Any) -> Any:
    raw = {
        "bindings": {
            "good": {"type": "echo", "delay_ms": 5},
            "broken": {"type": "echo", "down": True},
            "one": {"type": "echo", "delay_ms": 200, "max_concurrent": 1},
        },
        "defaults": {"ttt": "good"},
        "routes": {"chat": ["broken/echo", "good/echo"]},
        "resilience": {"failure_threshold": 100, "health_interval_s": 0},
        "resources": resources,
    }
    return make_config(raw)


def events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def lollms(binding: str | None, model: str, **more: Any) -> dict[str, Any]:
    body = {"input_data": [{"type": "text", "data": "hello there"}], "stream": True}
    return {**body, "model_name": model, **({"binding_name": binding} if binding else {}), **more}


async def test_fallback_stream_chunks_name_the_target_that_served(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    chat = await client.post("/v1/chat/completions", json={"model": "chat", **CHAT})
    assert chat.status == 200
    chunks = events(await chat.text())
    assert chunks and {c["model"] for c in chunks} == {"good/echo"}
    generate = await client.post("/api/v1/generate", json=lollms(None, "chat"))
    assert generate.status == 200
    sent = events(await generate.text())
    started = sent[0]["metadata"]
    assert (started["binding"], started["model"]) == ("good", "echo")
    assert sent[-1]["metadata"]["binding_instance"] == "good"


async def test_lollms_stream_instance_down_is_a_503(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config))
    response = await client.post("/api/v1/generate", json=lollms("broken", "echo"))
    assert response.status == 503, await response.text()
    assert response.content_type == "application/json"
    assert (await response.json())["error"]["binding"] == "broken"


async def test_lollms_stream_unknown_model_is_a_404(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config))
    response = await client.post("/api/v1/generate", json=lollms("good", "nope"))
    assert response.status == 404, await response.text()


async def test_lollms_stream_queue_full_is_a_503(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, queue_size=0))
    hold = lollms("one", "slow")
    first = client.post("/api/v1/generate", json=hold)
    async with first as running:
        assert running.status == 200
        await running.content.readline()
        refused = await client.post("/api/v1/generate", json=lollms("one", "slow"))
        assert refused.status == 503, await refused.text()
        assert int(refused.headers["Retry-After"]) >= 1


def queued_config(make_config: Any, **resources: Any) -> Any:
    raw = {
        "bindings": {"one": {"type": "echo", "delay_ms": 150, "max_concurrent": 1}},
        "defaults": {"ttt": "one"},
        "resources": resources,
    }
    return make_config(raw)


async def test_lollms_stream_queued_then_timed_out_is_a_503(
    make_client: Any, make_config: Any
) -> None:
    """Queue-position events came first, so the face answered 200 and then an error event."""
    client: Client = await make_client(queued_config(make_config, queue_timeout_s=0.1))
    holder = asyncio.ensure_future(client.post("/api/v1/generate", json=lollms("one", "slow")))
    await asyncio.sleep(0.05)  # the holder has the model's one slot
    refused = await client.post("/api/v1/generate", json=lollms("one", "slow"))
    assert refused.status == 503, await refused.text()
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue" in (await refused.json())["error"]["message"]
    assert (await holder).status == 200


async def test_lollms_stream_queued_then_first_token_timeout_is_a_504(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(queued_config(make_config, first_token_timeout_s=0.05))
    plain = {**lollms("one", "slow"), "stream": False}  # no first-token limit without a stream
    holder = asyncio.ensure_future(client.post("/api/v1/generate", json=plain))
    await asyncio.sleep(0.05)
    late = await client.post("/api/v1/generate", json=lollms("one", "slow"))
    assert late.status == 504, await late.text()
    assert "first token" in (await late.json())["error"]["message"]
    assert (await holder).status == 200


async def test_lollms_stream_error_after_the_first_token_stays_an_event(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    response = await client.post("/api/v1/generate", json=lollms("good", "fail"))
    assert response.status == 200
    kinds = [event["type"] for event in events(await response.text())]
    assert kinds[:2] == ["info", "chunk"] and "error" in kinds
