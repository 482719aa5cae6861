"""The dashboard page, its htmx partial, and the vendored htmx files."""

import hashlib
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

import lollms_server

VENDOR = Path(lollms_server.__file__).parent / "static" / "vendor"


async def test_dashboard_full_page_and_partial(client: TestClient[Any, Any]) -> None:
    page = await client.get("/")
    html = await page.text()
    assert page.status == 200
    assert page.headers["Vary"] == "HX-Request"
    assert "<html" in html and "htmx-2.0.11.min.js" in html
    assert re.search(r"<td>echo</td><td>echo</td><td>up</td>", html)
    partial = await client.get("/", headers={"HX-Request": "true"})
    fragment = await partial.text()
    assert "<html" not in fragment and "<td>echo</td>" in fragment


async def test_static_vendor_files_are_served(client: TestClient[Any, Any]) -> None:
    response = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert response.status == 200
    assert b"htmx" in await response.read()


def test_vendored_hashes_match_vendor_md() -> None:
    table = (VENDOR / "VENDOR.md").read_text()
    rows = re.findall(r"^\| (\S+\.js) \| .* \| ([0-9a-f]{64}) \|$", table, re.M)
    assert len(rows) == 2
    for name, digest in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest
