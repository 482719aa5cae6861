"""With CORS on, every answer says `Vary: Origin`, whichever Origin (or none) it was sent."""

from __future__ import annotations

from typing import Any

RAW = {
    "bindings": {"echo": {"type": "echo"}},
    "defaults": {"ttt": "echo"},
    "security": {"cors_origins": ["http://app.example"]},
}
ORIGINS: list[dict[str, str]] = [
    {},
    {"Origin": "http://evil.example"},
    {"Origin": "http://app.example"},
]


def vary_of(headers: Any) -> list[str]:
    """The names in every `Vary` header of an answer."""
    return [n.strip() for v in headers.getall("Vary", []) for n in v.split(",") if n.strip()]


async def test_every_answer_varies_on_origin_when_cors_is_on(
    make_client: Any, make_config: Any
) -> None:
    """A shared cache keys an answer by the headers its Vary names. Before, only answers to an
    allowed origin said `Vary: Origin`: the answer to a request without Origin (no CORS
    headers) was cached for all, and the allowed page's browser then got it and refused it."""
    client = await make_client(make_config(RAW))
    generate = {"input_data": [{"type": "text", "data": "hi"}]}
    for origin in ORIGINS:
        answers = {
            "health": await client.get("/api/v1/health", headers=origin),
            "models": await client.get("/v1/models", headers=origin),
            "page": await client.get("/", headers=origin),
            "no route": await client.get("/api/v1/nothing-here", headers=origin),
            "stream": await client.post(
                "/api/v1/generate", json={**generate, "stream": True}, headers=origin
            ),
            "preflight": await client.options(
                "/api/v1/generate", headers={**origin, "Access-Control-Request-Method": "POST"}
            ),
        }
        for name, answer in answers.items():
            await answer.read()
            assert vary_of(answer.headers).count("Origin") == 1, (origin, name, answer.headers)
        assert vary_of(answers["page"].headers) == ["HX-Request", "Origin"]


async def test_no_vary_origin_without_cors(make_client: Any, make_config: Any) -> None:
    """CORS off: no answer depends on Origin, so none says so (caches keep one copy)."""
    client = await make_client(make_config({**RAW, "security": {}}))
    for origin in ORIGINS:
        answer = await client.get("/api/v1/health", headers=origin)
        assert "Origin" not in vary_of(answer.headers)
