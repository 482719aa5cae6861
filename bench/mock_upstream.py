"""A fast mock OpenAI-compatible upstream for bench/overhead.py: fixed answers, no sleeps.

`python bench/mock_upstream.py PORT [--chunk-delay S]` serves on 127.0.0.1:PORT: `GET /v1/models`
(one model, `mock`), `POST /v1/chat/completions` (a fixed small completion, or `CHUNKS` SSE chunks
and `[DONE]` when `stream` is true; `--chunk-delay` sleeps that long before each chunk after the
first, to hold streams open; `--latency` sleeps that long before any answer, a known upstream
latency for overhead measurements) and `GET /health`.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

CHUNKS = 20
MODEL = "mock"
ANSWER = "The quick brown fox jumps over the lazy dog."
MODELS = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
USAGE = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()


def _chunk(delta: dict[str, str], finish: str | None, usage: bool = False) -> bytes:
    """One `data:` line of a streamed chat completion."""
    body: dict[str, object] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = USAGE
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = (
    b"".join(
        _chunk({"content": f"tok{i} "} if i else {"role": "assistant", "content": "tok0 "}, None)
        for i in range(CHUNKS - 1)
    )
    + _chunk({"content": "end"}, "stop", usage=True)
    + b"data: [DONE]\n\n"
)
FIRST, _, REST = STREAM.partition(b"\n\n")
PARTS = [part + b"\n\n" for part in REST.split(b"\n\n") if part]
DELAY = web.AppKey("delay", float)
LATENCY = web.AppKey("latency", float)


async def models(request: web.Request) -> web.Response:
    """The model list: one model."""
    return web.json_response(MODELS)


async def chat(request: web.Request) -> web.StreamResponse:
    """A fixed completion, or CHUNKS SSE chunks (the first flushed on its own) and [DONE]."""
    body = await request.json()
    if request.app[LATENCY]:
        await asyncio.sleep(request.app[LATENCY])
    if not body.get("stream"):
        return web.Response(body=COMPLETION, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(FIRST + b"\n\n")
    delay = request.app[DELAY]
    for part in PARTS:
        if delay:
            await asyncio.sleep(delay)
        await response.write(part)
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok"})


def main() -> None:
    """Serve on 127.0.0.1 at the given port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    app = web.Application()
    app[DELAY] = args.chunk_delay
    app[LATENCY] = args.latency
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
