"""A missing file under /static/ is answered like any unknown path: same headers, error page."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
VARYING = {"date", "x-request-id", "content-length", "x-lollms-overhead-ms"}


async def test_static_404_is_the_common_404(client: Client) -> None:
    unknown = await client.get("/no-such-page")
    missing = await client.get("/static/no-such-file.css")
    assert unknown.status == missing.status == 404
    assert {k.lower() for k in missing.headers} - VARYING == {
        k.lower() for k in unknown.headers
    } - VARYING
    for name in ("Content-Type", "Vary", "Content-Security-Policy", "X-Content-Type-Options"):
        assert missing.headers.get(name) == unknown.headers.get(name), name
    page, other = await missing.text(), await unknown.text()
    assert "<title>" in page and page.split("<title>")[1] == other.split("<title>")[1]
    for path in ("/static/vendor/", "/static/vendor/nope.js", "/static/../pyproject.toml"):
        assert (await client.get(path)).status in (403, 404), path
    served = await client.get("/static/style.css")
    assert served.status == 200 and served.content_type == "text/css"
