"""Access control over every route: keys, roles, safe local access, limits, audit, storage."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from lollms_server.keys import AUDIT, KEYSTORE
from lollms_server.storage.sqlite import SqliteStore

Client = TestClient[Any, Any]


def secret_of(key: str) -> str:
    """The secret part of `lollms_<12 hex id>_<secret>` (the secret may contain '_')."""
    return key[len("lollms_") + 13 :]


FOREIGN = {"Host": "evil.example"}  # a DNS-rebinding Host: the request is not local


def routes_of(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, url, access) of every route, path parameters filled in."""
    found = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or isinstance(route.resource, web.StaticResource):
            continue
        info = route.resource.get_info() if route.resource else {}
        pattern = info.get("formatter") or info.get("path") or ""
        url = re.sub(r"\{[^}]+\}", "x", pattern)
        found.append((route.method, url, _access(app, route.method, url)))
    return found


def _access(app: web.Application, method: str, url: str) -> str:
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        pattern = info.get("formatter") or info.get("path") or ""
        if route.method == method and re.sub(r"\{[^}]+\}", "x", pattern) == url:
            doc = getattr(route.handler, "__lollms_doc__", None)
            if doc is not None:
                return str(doc.access)
            return str(getattr(route.handler, "__lollms_access__", "user"))
    raise AssertionError(url)


@pytest.fixture
async def keys(client: Client) -> dict[str, str]:
    store = client.server.app[KEYSTORE]
    admin, _ = await store.create("admin", "admin")
    user, _ = await store.create("user", "user")
    expired, _ = await store.create("old", "user", expires_at=time.time() - 1)
    revoked, record = await store.create("gone", "user")
    await store.revoke(record.id)
    return {"admin": admin, "user": user, "expired": expired, "revoked": revoked}


async def call(client: Client, method: str, url: str, headers: dict[str, str]) -> int:
    response = await client.request(method, url, json={}, headers=headers, allow_redirects=False)
    await response.read()
    if response.status == 303 and response.headers.get("Location", "").startswith("/login?"):
        return 401  # a page without a key sends the browser to the login form
    return response.status


async def test_auth_matrix_over_every_route(client: Client, keys: dict[str, str]) -> None:
    bearer = lambda key: {"Authorization": f"Bearer {key}", **FOREIGN}  # noqa: E731
    cases: dict[str, dict[str, str]] = {
        "no key": FOREIGN,
        "bad key": {"X-API-Key": "lollms_000000000000_" + "a" * 43, **FOREIGN},
        "expired key": bearer(keys["expired"]),
        "revoked key": bearer(keys["revoked"]),
        "user key": bearer(keys["user"]),
        "admin key": {"X-API-Key": keys["admin"], **FOREIGN},
        "local, good Host": {},
        "local, rebinding Host": FOREIGN,
        "local, cross-site Origin": {"Origin": "http://evil.example"},
        "local, X-Forwarded-For (proxied)": {"X-Forwarded-For": "203.0.113.9"},
    }
    routes = routes_of(client.server.app)
    assert len(routes) > 30
    problems = []
    for method, url, access in routes:
        for case, headers in cases.items():
            status = await call(client, method, url, headers)
            expected = _expected(case, access, method)
            ok = status not in (401, 403) if expected == "allowed" else status == expected
            if not ok:
                problems.append(f"{case} {method} {url} ({access}): {status}, want {expected}")
    assert not problems, "\n".join(problems)


def _expected(case: str, access: str, method: str) -> str | int:
    if access == "public":
        # the login and logout forms refuse cross-site posts, local or not
        cross_site_form = case == "local, cross-site Origin" and method == "POST"
        return 403 if cross_site_form else "allowed"
    if case in (
        "no key",
        "bad key",
        "expired key",
        "revoked key",
        "local, rebinding Host",
        "local, X-Forwarded-For (proxied)",
    ):
        return 401
    if case == "local, cross-site Origin" and method not in ("GET", "HEAD"):
        return 401
    if case == "user key" and access == "admin":
        return 403
    return "allowed"


async def test_error_bodies_say_which_failure_but_not_which_part(
    client: Client, keys: dict[str, str]
) -> None:
    missing = await (await client.get("/api/v1/list_models", headers=FOREIGN)).json()
    assert missing["error"]["type"] == "unauthorized" and "required" in missing["error"]["message"]
    real_id = keys["user"].split("_")[1]
    wrong_secret = f"lollms_{real_id}_" + "b" * 43
    unknown_id = "lollms_ffffffffffff_" + "b" * 43
    bodies = []
    for key in (wrong_secret, unknown_id):
        response = await client.get("/api/v1/list_models", headers={"X-API-Key": key, **FOREIGN})
        assert response.status == 401
        error = (await response.json())["error"]
        assert error.pop("request_id") == response.headers["X-Request-Id"]
        bodies.append(error)
    assert bodies[0] == bodies[1]  # a right id with a wrong secret reads like any bad key
    expired = await client.get(
        "/api/v1/list_models", headers={"X-API-Key": keys["expired"], **FOREIGN}
    )
    assert "expired" in (await expired.json())["error"]["message"]
    forbidden = await client.get("/api/v1/keys", headers={"X-API-Key": keys["user"], **FOREIGN})
    assert (await forbidden.json())["error"]["type"] == "forbidden"


async def test_openai_sdk_style_dummy_key_works_locally(client: Client) -> None:
    response = await client.get("/v1/models", headers={"Authorization": "Bearer unused"})
    assert response.status == 200
    remote = await client.get("/v1/models", headers={"Authorization": "Bearer unused", **FOREIGN})
    assert remote.status == 401


async def test_health_says_whether_a_key_is_needed(client: Client) -> None:
    local = await (await client.get("/api/v1/health")).json()
    remote = await (await client.get("/api/v1/health", headers=FOREIGN)).json()
    assert local["api_key_required"] is False and remote["api_key_required"] is True


async def test_allow_lists_limit_instances_and_models(client: Client) -> None:
    store = client.server.app[KEYSTORE]
    only_echo_model, _ = await store.create("m", "user", allowed_models=["echo/echo"])
    only_other, _ = await store.create("b", "user", allowed_bindings=["other"])
    body = {"input_data": [{"type": "text", "data": "hi"}], "model_name": "slow"}
    for key, model, expected in (
        (only_echo_model, "echo", 200),
        (only_echo_model, "slow", 403),
        (only_other, "echo", 403),
    ):
        response = await client.post(
            "/api/v1/generate",
            json={**body, "model_name": model},
            headers={"X-API-Key": key, **FOREIGN},
        )
        assert response.status == expected, await response.text()
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "echo/slow", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {only_echo_model}", **FOREIGN},
    )
    assert chat.status == 403


async def test_security_headers_on_pages_and_apis(client: Client) -> None:
    for path in ("/", "/api/v1/health"):
        response = await client.get(path)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "same-origin"
    cors = await client.get("/api/v1/health", headers={"Origin": "http://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in cors.headers


async def test_cors_allow_list(make_client: Any, make_config: Any) -> None:
    raw = {
        "bindings": {"echo": {"type": "echo"}},
        "defaults": {"ttt": "echo"},
        "security": {"cors_origins": ["http://app.example"]},
    }
    client = await make_client(make_config(raw))
    ok = await client.options(
        "/api/v1/generate",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "traceparent" in ok.headers["Access-Control-Allow-Headers"]
    # a page of that origin can read the request id, the ignored-field names, the limits
    answer = await client.get("/api/v1/health", headers={"Origin": "http://app.example"})
    exposed = answer.headers["Access-Control-Expose-Headers"]
    assert "X-Request-Id" in exposed and "X-Lollms-Ignored-Fields" in exposed
    assert "X-RateLimit-Remaining" in exposed
    refused = await client.options(
        "/api/v1/generate",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status == 403


async def test_cors_preflight_allows_the_headers_the_page_asks_for(
    make_client: Any, make_config: Any
) -> None:
    """The openai JS SDK in a browser sends its `X-Stainless-*` headers (and OpenAI-Project):
    an allowed origin's preflight allows the headers it asks for. Before, only a fixed list
    was allowed, and Chromium refused the SDK's every request ("Failed to fetch")."""
    raw = {
        "bindings": {"echo": {"type": "echo"}},
        "security": {"cors_origins": ["http://app.example"]},
    }
    client = await make_client(make_config(raw))
    asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count, openai-project"
    preflight = {
        "Origin": "http://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked,
    }
    ok = await client.options("/v1/chat/completions", headers=preflight)
    assert ok.status == 204
    allowed = {h.strip().lower() for h in ok.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(asked.split(", ")) <= allowed
    assert {"x-api-key", "traceparent"} <= allowed  # the server's own, asked for or not
    bad = {**preflight, "Access-Control-Request-Headers": "x-ok, bad header"}
    answer = await client.options("/v1/chat/completions", headers=bad)  # not a header name
    assert "bad header" not in answer.headers.get("Access-Control-Allow-Headers", "").lower()


async def test_audit_records_auth_failures_keys_and_generations(
    client: Client, keys: dict[str, str]
) -> None:
    await client.get("/api/v1/list_models", headers={"X-API-Key": keys["revoked"], **FOREIGN})
    created = await client.post("/api/v1/keys", json={"name": "via-api", "role": "user"})
    assert created.status == 201
    new = await created.json()
    await client.delete(f"/api/v1/keys/{new['id']}")
    generated = await client.post(
        "/api/v1/generate",
        json={"input_data": [{"type": "text", "data": "audited words"}]},
        headers={"X-API-Key": keys["user"], **FOREIGN},
    )
    assert generated.status == 200
    events = (await (await client.get("/api/v1/audit?limit=50")).json())["events"]
    kinds = [e["event"] for e in events]
    assert {"auth_failed", "key_created", "key_revoked", "generation"} <= set(kinds)
    failure = next(e for e in events if e["event"] == "auth_failed")
    assert failure["key_id"] == keys["revoked"].split("_")[1]
    generation = next(e for e in events if e["event"] == "generation")
    assert generation["key_id"] == keys["user"].split("_")[1]
    assert generation["completion_tokens"] == 2 and generation["status"] == 200
    assert "audited words" not in str(events)  # prompts are not logged by default
    text = str(events)
    for key in keys.values():
        assert key not in text and secret_of(key) not in text


async def test_database_never_holds_a_plaintext_key(client: Client, keys: dict[str, str]) -> None:
    created = await (await client.post("/api/v1/keys", json={"name": "api"})).json()
    app = client.server.app
    store = app[AUDIT].store
    assert isinstance(store, SqliteStore)
    store.checkpoint()
    files = [store.path, *store.path.parent.glob("*.sqlite-wal")]
    data = b"".join(f.read_bytes() for f in files if f.exists())
    for key in [*keys.values(), created["key"]]:
        assert key.encode() not in data
        assert secret_of(key).encode() not in data


async def test_rate_limit_burst_never_overshoots(make_client: Any, make_config: Any) -> None:
    raw = {
        "bindings": {"echo": {"type": "echo"}},
        "defaults": {"ttt": "echo"},
        "security": {"rate_limit_window_s": 2},
    }
    client = await make_client(make_config(raw))
    key, _ = await client.server.app[KEYSTORE].create("limited", "user", rpm=5)
    headers = {"X-API-Key": key, **FOREIGN}
    responses = await asyncio.gather(
        *(client.get("/api/v1/list_models", headers=headers) for _ in range(20))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 5 and statuses.count(429) == 15
    limited = next(r for r in responses if r.status == 429)
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert (await limited.json())["error"]["type"] == "rate_limited"
    await asyncio.sleep(retry_after + 0.1)
    again = await client.get("/api/v1/list_models", headers=headers)
    assert again.status == 200


SLOW_ECHO_LIMITED = {
    "bindings": {"echo": {"type": "echo", "delay_ms": 200}},
    "defaults": {"ttt": "echo"},
    "security": {"rate_limit_window_s": 60},
}


async def test_token_and_concurrency_limits(make_client: Any, make_config: Any) -> None:
    client = await make_client(make_config(SLOW_ECHO_LIMITED))
    store = client.server.app[KEYSTORE]
    tokens, _ = await store.create("tpm", "user", tpm=5)
    body = {"input_data": [{"type": "text", "data": "one two three four five six"}]}
    first = await client.post(
        "/api/v1/generate", json=body, headers={"X-API-Key": tokens, **FOREIGN}
    )
    assert first.status == 200
    second = await client.post(
        "/api/v1/generate", json=body, headers={"X-API-Key": tokens, **FOREIGN}
    )
    assert second.status == 429 and "token" in (await second.json())["error"]["message"]
    single, _ = await store.create("one-at-a-time", "user", max_concurrent=1)
    slow = {**body, "model_name": "slow"}
    both = await asyncio.gather(
        *(
            client.post("/api/v1/generate", json=slow, headers={"X-API-Key": single, **FOREIGN})
            for _ in range(2)
        )
    )
    assert sorted(r.status for r in both) == [200, 429]


async def test_embeddings_count_against_token_and_concurrency_limits(
    make_client: Any, make_config: Any
) -> None:
    """Embeddings take a concurrent slot and charge their texts to the key's token budget, on
    every face. Before, a key limited to 5 tokens and 1 generation at once embedded megabytes
    of text, in parallel with its generation, as often as its rpm allowed."""
    client = await make_client(make_config(SLOW_ECHO_LIMITED))
    store = client.server.app[KEYSTORE]
    text = "one two three four five six"
    calls = [
        ("/v1/embeddings", {"model": "echo/echo", "input": [text]}),
        ("/api/embed", {"model": "echo/echo", "input": text}),
        ("/api/embeddings", {"model": "echo/echo", "prompt": text}),
        ("/lollms_embed", {"text": text}),
    ]
    for path, body in calls:
        budget, _ = await store.create(f"tpm {path}", "user", tpm=5)
        headers = {"X-API-Key": budget, **FOREIGN}
        first = await client.post(path, json=body, headers=headers)
        assert first.status == 200, (path, await first.text())
        second = await client.post(path, json=body, headers=headers)
        assert second.status == 429, path
        single, _ = await store.create(f"one {path}", "user", max_concurrent=1)
        headers = {"X-API-Key": single, **FOREIGN}
        slow = {"input_data": [{"type": "text", "data": text}], "model_name": "slow"}
        generating = asyncio.ensure_future(
            client.post("/api/v1/generate", json=slow, headers=headers)
        )
        await asyncio.sleep(0.1)
        during = await client.post(path, json=body, headers=headers)
        assert during.status == 429, path
        assert (await generating).status == 200
        assert (await client.post(path, json=body, headers=headers)).status == 200


async def test_tokenizer_calls_take_a_concurrent_slot(make_client: Any, make_config: Any) -> None:
    """Tokenize, detokenize and count_tokens run the model's tokenizer (llama.cpp: ~3 s of its
    CPU for a 4 MB text), so they take one of the key's concurrent slots, on every route that
    offers them; they charge no tokens. Before, a key limited to one generation at once ran as
    many tokenizations beside it as it sent (six made another key's 5-token chat on SmolLM2
    take 12.6 s instead of 0.08 s)."""
    client = await make_client(make_config(SLOW_ECHO_LIMITED))
    store = client.server.app[KEYSTORE]
    text = "one two three four five six"
    calls = [
        ("/api/v1/tokenize", {"text": text}),
        ("/api/v1/count_tokens", {"text": text}),
        ("/api/v1/detokenize", {"tokens": [104, 105]}),
        ("/lollms/v1/tokenize", {"text": text}),
        ("/lollms/v1/detokenize", {"tokens": [104, 105]}),
        ("/lollms_tokenize", {"prompt": text}),
        ("/lollms_detokenize", {"tokens": [104, 105]}),
    ]
    single, _ = await store.create("one at a time", "user", max_concurrent=1, tpm=1000)
    headers = {"X-API-Key": single, **FOREIGN}
    for path, body in calls:
        slow = {"input_data": [{"type": "text", "data": text}], "model_name": "slow"}
        generating = asyncio.ensure_future(
            client.post("/api/v1/generate", json=slow, headers=headers)
        )
        await asyncio.sleep(0.1)
        during = await client.post(path, json=body, headers=headers)
        assert during.status == 429, (path, during.status, await during.text())
        assert (await generating).status == 200
        after = await client.post(path, json=body, headers=headers)
        assert after.status == 200, (path, await after.text())
    budget, _ = await store.create("tiny budget", "user", tpm=5)
    first = await client.post("/api/v1/tokenize", json=calls[0][1], headers={"X-API-Key": budget})
    again = await client.post("/api/v1/tokenize", json=calls[0][1], headers={"X-API-Key": budget})
    assert (first.status, again.status) == (200, 200)  # no tokens charged


async def test_pages_send_a_keyless_remote_browser_to_login(client: Client) -> None:
    response = await client.get("/models?q=x", headers=FOREIGN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2Fmodels%3Fq%3Dx"
    fragment = await client.get(
        "/models", headers={**FOREIGN, "HX-Request": "true"}, allow_redirects=False
    )
    assert fragment.status == 401 and "text/html" in fragment.headers["Content-Type"]
    missing = await client.get("/no-such-page")
    assert missing.status == 404 and "text/html" in missing.headers["Content-Type"]
    wrong_method = await client.delete("/models")  # the pages' error page, not the API's JSON
    assert wrong_method.status == 405 and "text/html" in wrong_method.headers["Content-Type"]
    api_missing = await client.get("/api/v1/no-such-route")
    assert api_missing.status == 404 and (await api_missing.json())["error"]["type"]
