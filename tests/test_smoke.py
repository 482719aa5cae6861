"""A first end-to-end check of the lollms API through the echo binding."""

from typing import Any

from aiohttp.test_utils import TestClient


async def test_health_and_generate(client: TestClient[Any, Any]) -> None:
    health = await (await client.get("/api/v1/health")).json()
    assert health["status"] == "ok"
    response = await client.post(
        "/api/v1/generate", json={"input_data": [{"type": "text", "data": "hello world"}]}
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["output"][0]["data"] == "hello world"
