"""While the server drains, every route that starts a generation is refused (503 `draining`,
Retry-After) before the rate limits count it: the replica that serves the load balancer's retry
counts it, and counted on both, one request spent two of the key's requests per minute
(the real HAProxy + Redis case: test_drain_limits_haproxy.py). Other routes still answer and
count."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from lollms_server.httpkit.endpoint import doc_of
from lollms_server.keys import DRAIN, KEYSTORE

Client = TestClient[Any, Any]
FOREIGN = {"Host": "api.example"}  # not this machine: the request needs its key
FACES = {  # one generation route of each face, and a page
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/api/chat",
    "/api/generate",
    "/api/v1/generate",
    "/lollms_generate",
    "/playground/chat",
}


def generation_routes(app: web.Application) -> list[str]:
    """The paths of the POST routes marked as starting a generation."""
    found = []
    for route in app.router.routes():
        doc = doc_of(route.handler)
        marked = (
            doc.generates
            if doc is not None
            else getattr(route.handler, "__lollms_generates__", False)
        )
        if route.method == "POST" and marked:
            found.append(route.resource.canonical if route.resource else "")
    return found


async def test_generations_are_refused_before_the_key_limit_counts_them(client: Client) -> None:
    app = client.server.app
    key, _ = await app[KEYSTORE].create("u", "user", rpm=2)
    auth = {"Authorization": f"Bearer {key}", **FOREIGN}
    routes = generation_routes(app)
    assert set(routes) >= FACES, sorted(FACES - set(routes))
    app[DRAIN].started_at = time.monotonic()
    for path in routes:
        response = await client.post(path, json={}, headers=auth)
        text = await response.text()
        assert response.status == 503, (path, response.status, text[:300])
        assert "shutting down" in text and int(response.headers["Retry-After"]) >= 1, path
    statuses = []
    for _ in range(3):  # a listing answers while draining, and counts: the rpm of 2 is whole
        response = await client.get("/v1/models", headers=auth)
        statuses.append(response.status)
    assert statuses == [200, 200, 429], statuses
