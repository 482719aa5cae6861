"""A bare aiohttp pass-through proxy: the reference hop of bench/overhead.py.

`python bench/bare_proxy.py PORT UPSTREAM` serves on 127.0.0.1:PORT and forwards every request
to `UPSTREAM` (e.g. http://127.0.0.1:8001) through one shared ClientSession, copying the status,
the content type and the body as it arrives (chunk by chunk, so streams pass through). No
parsing, validation, logging or audit: what one aiohttp hop costs on this machine.
"""

from __future__ import annotations

import sys

from aiohttp import ClientSession, TCPConnector, web

SESSION = web.AppKey("session", ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    """Send the request on and relay the upstream's answer as it comes."""
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[SESSION].request(
        request.method, url, data=body, headers=headers
    ) as upstream:
        response = web.StreamResponse(status=upstream.status)
        response.content_type = upstream.content_type
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok"})


async def open_session(app: web.Application) -> None:
    """One pooled client session for the whole process (unbounded pool, like lollms-server's)."""
    app[SESSION] = ClientSession(connector=TCPConnector(limit=0))


async def close_session(app: web.Application) -> None:
    """Close the client session on shutdown."""
    await app[SESSION].close()


def main() -> None:
    """Serve on 127.0.0.1 at argv[1], forwarding to argv[2]."""
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    app = web.Application()
    app[UPSTREAM] = upstream
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
