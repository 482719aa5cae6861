"""Per-model concurrency, the bounded priority queue, queue info events, queue/TTFT timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient

from lollms_server.keys import KEYSTORE, SCHEDULER

Client = TestClient[Any, Any]
FOREIGN = {"Host": "evil.example"}


def config(make_config: Any, delay_ms: int = 100, **resources: Any) -> Any:
    return make_config(
        {
            "bindings": {"echo": {"type": "echo", "delay_ms": delay_ms, "max_concurrent": 1}},
            "defaults": {"ttt": "echo"},
            "resources": resources,
        }
    )


def slow(words: int = 3, stream: bool = False) -> dict[str, Any]:
    text = " ".join(f"w{i}" for i in range(words))
    return {"input_data": [{"type": "text", "data": text}], "model_name": "slow", "stream": stream}


async def events_of(response: Any) -> list[dict[str, Any]]:
    text = await response.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_one_at_a_time_when_max_concurrent_is_1(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, delay_ms=100))
    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.post("/api/v1/generate", json=slow(3)) for _ in range(3))
    )
    elapsed = time.monotonic() - started
    assert [r.status for r in responses] == [200, 200, 200]
    assert elapsed >= 0.8  # 3 requests x 3 tokens x 100 ms, one after another
    lane = client.server.app[SCHEDULER].lanes[("echo", "slow")]
    assert lane.active == 0 and not lane.waiting and lane.capacity == 1


async def test_full_queue_is_503_with_retry_after(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, queue_size=1))
    responses = await asyncio.gather(
        *(client.post("/api/v1/generate", json=slow(4)) for _ in range(3))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 200, 503]
    refused = next(r for r in responses if r.status == 503)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue" in (await refused.json())["error"]["message"]


async def test_streamed_requests_see_their_queue_position(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    first = asyncio.ensure_future(client.post("/api/v1/generate", json=slow(4)))
    await asyncio.sleep(0.05)
    queued = await client.post("/api/v1/generate", json=slow(2, stream=True))
    events = await events_of(queued)
    await (await first).read()
    positions = [e["metadata"].get("queue_position") for e in events if e["type"] == "info"]
    assert 1 in positions
    assert events[-1]["type"] == "final"
    assert [e["type"] for e in events].count("chunk") == 2


async def test_disconnect_while_queued_frees_the_place(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, queue_size=1))
    lane_key = ("echo", "slow")
    running = asyncio.ensure_future(client.post("/api/v1/generate", json=slow(8)))
    await asyncio.sleep(0.05)
    # a stream's answer starts with its first token: the client waits for the headers
    waiting = asyncio.ensure_future(client.post("/api/v1/generate", json=slow(2, stream=True)))
    lane = client.server.app[SCHEDULER].lanes[lane_key]
    for _ in range(150):  # up to 3 s for the request to reach the queue
        if lane.waiting:
            break
        await asyncio.sleep(0.02)
    assert len(lane.waiting) == 1
    waiting.cancel()  # the client goes away while queued
    for _ in range(150):  # up to 3 s for the server to notice
        if not lane.waiting:
            break
        await asyncio.sleep(0.02)
    assert not lane.waiting
    replacement = await client.post("/api/v1/generate", json=slow(1))
    assert replacement.status == 200  # not a 503: the abandoned place was given back
    assert (await running).status == 200


async def test_admins_go_before_users(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, delay_ms=60))
    user_key, _ = await client.server.app[KEYSTORE].create("u", "user")
    done: list[str] = []

    async def run(name: str, headers: dict[str, str]) -> None:
        response = await client.post("/api/v1/generate", json=slow(2), headers=headers)
        assert response.status == 200
        done.append(name)

    blocker = asyncio.ensure_future(run("blocker", {}))
    await asyncio.sleep(0.03)
    user = asyncio.ensure_future(run("user", {"X-API-Key": user_key, **FOREIGN}))
    await asyncio.sleep(0.03)
    admin = asyncio.ensure_future(run("admin", {}))  # local access is admin
    await asyncio.gather(blocker, user, admin)
    assert done == ["blocker", "admin", "user"]


async def test_queue_wait_limit(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config, delay_ms=150, queue_timeout_s=0.1))
    responses = await asyncio.gather(
        *(client.post("/api/v1/generate", json=slow(3)) for _ in range(2))
    )
    late = next(r for r in responses if r.status != 200)
    assert late.status == 503
    assert "waited" in (await late.json())["error"]["message"]


async def test_first_token_limit(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(
        config(make_config, delay_ms=300, first_token_timeout_s=0.05)
    )
    response = await client.post("/api/v1/generate", json=slow(2, stream=True))
    assert response.status == 504  # nothing was sent yet: a plain HTTP error, not an event
    error = (await response.json())["error"]
    assert error["type"] == "backend_timeout"
    assert "first token" in error["message"]
    plain = await client.post("/api/v1/generate", json=slow(2))
    assert plain.status == 200  # the first-token limit applies to streams only


async def test_a_full_queue_is_shared_between_callers(make_client: Any, make_config: Any) -> None:
    """One key fills the queue (one running, two waiting): another key still gets a place, and
    the first key's last place gives way (its 503 says so); two callers holding one place each
    are even: a third request of either is refused."""
    client: Client = await make_client(config(make_config, delay_ms=100, queue_size=2))
    store = client.server.app[KEYSTORE]
    hog, other = (await store.create("h", "user"))[0], (await store.create("o", "user"))[0]
    hogs = [
        asyncio.ensure_future(
            client.post("/api/v1/generate", json=slow(4), headers={"X-API-Key": hog, **FOREIGN})
        )
        for _ in range(3)
    ]
    lane = None
    for _ in range(150):  # up to 3 s for one to run and two to wait
        lane = client.server.app[SCHEDULER].lanes.get(("echo", "slow"))
        if lane is not None and len(lane.waiting) == 2:
            break
        await asyncio.sleep(0.02)
    assert lane is not None and lane.active == 1 and len(lane.waiting) == 2
    mine = asyncio.ensure_future(
        client.post("/api/v1/generate", json=slow(1), headers={"X-API-Key": other, **FOREIGN})
    )
    done, _ = await asyncio.wait([*hogs, mine], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert mine not in done  # before: refused at once, the hog holding every place
    again = await client.post(
        "/api/v1/generate", json=slow(1), headers={"X-API-Key": other, **FOREIGN}
    )
    assert again.status == 503  # one place each: even, nobody gives way
    assert (await mine).status == 200
    answers = [await h for h in hogs]
    assert sorted(a.status for a in answers) == [200, 200, 503]
    refused = next(a for a in answers if a.status == 503)
    assert "gave it to another caller" in (await refused.json())["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
