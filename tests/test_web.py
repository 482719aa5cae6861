"""Every page and partial: full page vs htmx fragment, Vary, navigation, vendored htmx."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import lollms_server
from lollms_server.keys import KEYSTORE
from lollms_server.web import apidocs, pages

VENDOR = Path(lollms_server.__file__).parent / "static" / "vendor"
HX = {"HX-Request": "true"}
# path -> (text only the full page has, text the partial has)
PAGES = {
    "/": ("<h1>Dashboard</h1>", "Binding instances"),
    "/bindings": ("<h1>Bindings</h1>", "Binding types"),
    "/models": ("<h1>Models</h1>", 'id="type-ttt"'),
    "/personalities": ("<h1>Personalities</h1>", "personalit"),
    "/functions": ("<h1>Functions</h1>", "function"),
    "/playground/chat": ("<h1>Playground</h1>", 'id="chat-form"'),
    "/playground/image": ("<h1>Playground</h1>", 'id="image-form"'),
    "/playground/audio": ("<h1>Playground</h1>", 'id="transcribe-form"'),
    "/admin/keys": ("<h1>API keys</h1>", "Create key"),
    "/admin/audit": ("<h1>Audit log</h1>", "No event matches"),
    "/login": ("<h1>API key</h1>", "No key yet? An admin makes one on the server's machine"),
    "/api-docs": ("<h1>API docs</h1>", "/api/v1/generate"),
}


@pytest.mark.parametrize("path", PAGES)
async def test_page_full_and_partial(client: TestClient[Any, Any], path: str) -> None:
    page_only, partial_text = PAGES[path]
    page = await client.get(path)
    html = await page.text()
    assert page.status == 200, html
    assert page.headers["Vary"] == "HX-Request"
    assert page.content_type == "text/html"
    assert html.startswith("<!doctype html>") and page_only in html and partial_text in html
    assert "htmx-2.0.11.min.js" in html and "htmx-ext-sse-2.2.4.min.js" in html
    partial = await client.get(path, headers=HX)
    fragment = await partial.text()
    assert partial.status == 200
    assert partial.headers["Vary"] == "HX-Request"
    assert "<html" not in fragment and page_only not in fragment and partial_text in fragment


async def test_history_restore_gets_the_full_page(client: TestClient[Any, Any]) -> None:
    response = await client.get("/models", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in await response.text()


async def test_no_inline_script_or_style_in_any_page(client: TestClient[Any, Any]) -> None:
    """The CSP forbids inline script and style: every script is a static file."""
    for path in PAGES:
        html = await (await client.get(path)).text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\son[a-z]+=", html), path  # inline event handlers
        assert not re.search(r"\sstyle=", html), path
        assert "javascript:" not in html, path
        assert "hx-on" not in html, path


async def test_navigation_marks_the_current_page(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/playground/image")).text()
    assert '<a href="/playground/chat" aria-current="page">Playground</a>' in html
    assert '<a href="/models">Models</a>' in html


async def test_dashboard_status(client: TestClient[Any, Any]) -> None:
    await client.get("/api/v1/health")
    await client.post("/api/v1/generate", json={"input_data": [{"type": "text", "data": "hi"}]})
    html = await (await client.get("/", headers=HX)).text()
    assert re.search(r'<td><a href="/bindings#instance-echo">echo</a></td><td>echo</td>', html)
    assert 'class="state state-up">up<' in html
    assert "no GPU" in html  # this machine has no NVIDIA driver
    assert re.search(r"<th>Generations</th><td>1</td>", html)
    assert re.search(r"<td>lollms</td><td class=\"num\">2</td>", html)
    assert "RAM" in html and "cores" in html
    assert "echo/echo" in html  # the generation loaded it
    assert re.search(r'<td>echo/echo</td><td>[^<]*</td><td class="device">cpu</td>', html)
    assert re.search(
        r'id="device-memory">.*<td class="device">cpu</td><td class="num">1</td>', html, re.S
    )
    await client.post("/bindings/echo/unload", data={"model": "echo"}, headers=HX)
    html = await (await client.get("/", headers=HX)).text()
    assert "No model is loaded." in html
    await client.post("/bindings/echo/load", data={"model": "think"}, headers=HX)
    html = await (await client.get("/", headers=HX)).text()
    assert "echo/think" in html


async def test_dashboard_polls_itself(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/")).text()
    assert re.search(r'hx-get="/" hx-trigger="every \d+s"', html)


async def test_unhealthy_instance_is_shown_with_its_error(
    make_client: Any, make_config: Any
) -> None:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo"},
                "broken": {"type": "echo", "down": True},
            },
            "defaults": {"ttt": "echo"},
        }
    )
    client = await make_client(config)
    html = await (await client.get("/", headers=HX)).text()
    assert "configured down" in html and 'state-down">down<' in html
    models = await (await client.get("/models", headers=HX)).text()
    assert "broken" in models and "is configured down" in models
    bindings = await (await client.get("/bindings", headers=HX)).text()
    assert bindings.count('class="error"') >= 1


async def test_bindings_page_lists_types_instances_and_masks_secrets(
    make_client: Any, make_config: Any
) -> None:
    client = await make_client()
    html = await (await client.get("/bindings")).text()
    assert "<code>echo</code>" in html and "Echo (built-in test binding)" in html
    assert "delay_ms" in html and "load_unload" in html
    assert 'id="instance-echo"' in html
    assert html.count('data-model="') == 4


async def test_health_check_on_demand(client: TestClient[Any, Any]) -> None:
    response = await client.post("/bindings/echo/health", headers=HX)
    html = await response.text()
    assert response.status == 200
    assert html.lstrip().startswith('<section class="panel wide instance" id="instance-echo">')
    no_js = await client.post("/bindings/echo/health", allow_redirects=False)
    assert no_js.status == 303 and no_js.headers["Location"] == "/bindings"
    missing = await client.post("/bindings/nope/health", headers=HX)
    assert missing.status == 404 and "no binding instance named" in await missing.text()


async def test_load_and_unload_buttons(client: TestClient[Any, Any]) -> None:
    response = await client.post("/bindings/echo/load", data={"model": "slow"}, headers=HX)
    html = await response.text()
    assert response.status == 200 and "loaded slow" in html
    assert re.search(r'data-model="slow">.*?state-up">loaded<', html, re.S)
    response = await client.post("/bindings/echo/unload", data={"model": "slow"}, headers=HX)
    assert "unloaded slow" in await response.text()
    no_js = await client.post("/bindings/echo/load", data={"model": "slow"}, allow_redirects=False)
    assert no_js.status == 303


async def test_load_error_shows_inside_the_instance(client: TestClient[Any, Any]) -> None:
    response = await client.post("/bindings/echo/load", data={"model": "ghost"}, headers=HX)
    html = await response.text()
    assert response.status == 404
    assert 'id="instance-echo"' in html and "echo has no model" in html
    empty = await client.post("/bindings/echo/load", data={"model": " "}, headers=HX)
    assert empty.status == 422 and "model" in await empty.text()


async def test_models_page_groups_and_filters(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/models", headers=HX)).text()
    for generation_type in ("ttt", "tti", "i2i", "tts", "stt", "ttv", "ttm", "audio2audio"):
        assert f'id="type-{generation_type}"' in html
    assert "<code>echo/think</code>" in html and "<th>Context</th>" in html and "4096" in html
    assert "<th>Quantization</th>" not in html  # nobody reported one: the column is left out
    filtered = await (await client.get("/models?q=think&type=tti", headers=HX)).text()
    assert filtered.count('class="panel wide model-group"') == 1
    assert "<code>echo/think</code>" in filtered and "<code>echo/slow</code>" not in filtered
    nothing = await (await client.get("/models?q=zzz", headers=HX)).text()
    assert "No model matches." in nothing
    page = await (await client.get("/models?q=think")).text()
    assert 'value="think"' in page  # the filter form keeps the query (works without htmx)


async def test_personalities_and_functions_pages(make_client: Any, make_config: Any) -> None:
    from lollms_server.hookspecs import hookimpl
    from lollms_server.plugins import load_plugins

    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    class Extras:
        @hookimpl
        def register_personalities(self) -> list[dict[str, Any]]:
            return [
                {"name": "poet", "category": "art", "tags": ["verse"], "model_temperature": 0.9},
                {"name": "coder", "category": "code", "personality_description": "Python"},
            ]

        @hookimpl
        def register_functions(self) -> list[Any]:
            return [add]

    client = await make_client(make_config(), plugins=load_plugins({"extras": Extras()}))
    html = await (await client.get("/personalities", headers=HX)).text()
    assert "poet" in html and "coder" in html and "temperature" in html
    one = await (await client.get("/personalities?category=art", headers=HX)).text()
    assert "poet" in one and "coder" not in one
    searched = await (await client.get("/personalities?q=python", headers=HX)).text()
    assert "coder" in searched and "poet" not in searched
    functions = await (await client.get("/functions", headers=HX)).text()
    assert "<code>add</code>" in functions and "Add two numbers." in functions
    assert '<code>a</code>: integer <span class="req">required</span>' in functions
    none = await (await client.get("/functions?q=nothing", headers=HX)).text()
    assert "No function matches." in none


async def test_api_docs_render_the_openapi_document(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/api-docs")).text()
    assert "/api/v1/openapi.json" in html
    assert '<span class="method method-post">POST</span> <code>/api/v1/generate</code>' in html
    assert "<code>input_data</code>" in html and "array of InputData" in html
    assert 'class="depth-1"' in html  # nested fields of InputData
    assert "/v1/chat/completions" in html
    filtered = await (await client.get("/api-docs?q=tokenize", headers=HX)).text()
    assert "/api/v1/tokenize" in filtered and "/v1/chat/completions" not in filtered


async def test_api_docs_render_each_operation_once(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is public, so what one request costs is what anyone can make the loop spend:
    its operations are built and rendered on first use, then only filtered and joined (the
    whole 120 KB page rendered anew took ~14 ms of the loop per request)."""
    first = await (await client.get("/api-docs")).text()
    built: list[str] = []
    original = apidocs._operation

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append("op")
        return original(*args, **kwargs)

    monkeypatch.setattr(apidocs, "_operation", counted)
    for query in ("", "?q=a", "?q=tokenize", "?q=chat+o"):
        page = await (await client.get("/api-docs" + query)).text()
        assert "<h1>API docs</h1>" in page
    assert built == []
    assert await (await client.get("/api-docs")).text() == first


async def test_login_checks_the_key_and_keeps_it_in_a_strict_httponly_cookie(
    client: TestClient[Any, Any],
) -> None:
    key, _ = await client.app[KEYSTORE].create("browser", "user")
    response = await client.post(
        "/login", data={"key": key, "next": "/models"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/models"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"lollms_key={key};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    client.session.cookie_jar.clear()
    wrong = await client.post("/login", data={"key": "lollms_nope", "next": "//evil.example/"})
    html = await wrong.text()
    assert wrong.status == 401 and "invalid API key" in html and 'name="key"' in html
    assert 'name="next" value="/"' in html  # never sent on to another site
    out = await client.post("/logout", allow_redirects=False)
    assert 'lollms_key=""' in out.headers["Set-Cookie"]
    empty = await client.post("/login", data={"key": ""}, headers=HX)
    assert empty.status == 422 and "key" in await empty.text()


def test_access_levels_of_the_pages() -> None:
    """Admin pages need the admin role; the key page is the one page open to everybody."""
    from lollms_server.web import admin

    assert admin.keys_page.__lollms_access__ == "admin"  # type: ignore[attr-defined]
    assert admin.audit_page.__lollms_access__ == "admin"  # type: ignore[attr-defined]
    assert admin.login_page.__lollms_access__ == "public"  # type: ignore[attr-defined]
    assert admin.login.__lollms_access__ == "public"  # type: ignore[attr-defined]


async def test_static_vendor_files_are_served(client: TestClient[Any, Any]) -> None:
    for name in ("vendor/htmx-2.0.11.min.js", "vendor/htmx-ext-sse-2.2.4.min.js", "app.js"):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
    css = await client.get("/static/style.css")
    text = await css.text()
    for colour in ("#1a237e", "#303f9f", "#3f51b5", "#5c6bc0", "#0d1421", "#ffffff"):
        assert colour in text
    assert "border-radius: 0" in text


def test_vendored_hashes_match_vendor_md() -> None:
    table = (VENDOR / "VENDOR.md").read_text()
    rows = re.findall(r"^\| (\S+\.js) \| .* \| ([0-9a-f]{64}) \|$", table, re.M)
    assert len(rows) == 2
    for name, digest in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest


def test_templates_follow_the_naming_rule() -> None:
    """Partials start with `_`; every page extends base.html; no fixed widths in templates."""
    folder = pages.templates_dir()
    for template in folder.glob("*.html"):
        text = template.read_text()
        if template.name.startswith("_") or template.name == "base.html":
            assert "{% extends" not in text, template.name
        else:
            assert '{% extends "base.html" %}' in text, template.name
        assert not re.search(r"\b(width|height)=\"\d", text), template.name


def test_web_modules_stay_small() -> None:
    folder = Path(pages.__file__).parent
    for module in folder.glob("*.py"):
        assert len(module.read_text().splitlines()) < 400, module.name
