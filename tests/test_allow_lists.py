"""A key limited by allow-lists learns nothing of what it may not use, and the keys API takes
only allow-lists and limits that mean what they say."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.cli_keys import _split
from lollms_server.errors import InvalidRequest
from lollms_server.keys import KEYSTORE

Client = TestClient[Any, Any]
FOREIGN = {"Host": "evil.example"}  # not local: the key decides
HIDDEN = "hidden-instance"
HIDDEN_MODEL = "think"  # an echo model, the hidden instance's default


async def two_instances(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """`echo` and a second instance (the ttt default, with a model of its own) a key may not
    see; the second can do ttt only."""
    bindings = {
        "echo": {"type": "echo", "default_model": "slow", "delay_ms": 300},
        HIDDEN: {"type": "echo", "default_model": HIDDEN_MODEL, "delay_ms": 300},
    }
    defaults = {**ECHO_DEFAULTS, "ttt": HIDDEN}
    client = await make_client(make_config({"bindings": bindings, "defaults": defaults}))
    return client


async def test_a_limited_key_is_told_nothing_of_what_it_may_not_use(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    client = await two_instances(make_client, make_config)
    store = client.server.app[KEYSTORE]
    limited, _ = await store.create("limited", "user", allowed_models=["echo/slow"])
    admin, _ = await store.create("admin", "admin")
    as_limited = {"X-API-Key": limited, **FOREIGN}
    prompt = [{"type": "text", "data": "a b c"}]

    # both instances busy: each lane has a generation running, the hidden one by the admin
    hidden_body = {"binding_name": HIDDEN, "model_name": "slow", "input_data": prompt}
    busy = [
        asyncio.create_task(client.post("/api/v1/generate", json=hidden_body,
                                        headers={"X-API-Key": admin, **FOREIGN})),
        asyncio.create_task(client.post("/api/v1/generate", headers=as_limited,
                                        json={"binding_name": "echo", "input_data": prompt})),
    ]  # fmt: skip
    await asyncio.sleep(0.1)
    status = await client.get("/api/v1/status", headers=as_limited)
    await asyncio.gather(*busy)
    seen = await status.text()
    assert status.status == 200 and HIDDEN not in seen and HIDDEN_MODEL not in seen
    assert (await status.json())["queue_depth"] == {"echo/slow": 1}
    assert status.headers["X-Lollms-Model-Queue-Depth"] == "echo/slow=1"  # not the hidden lane
    assert status.headers["X-Lollms-Queue-Depth"] == "2"  # the server's load, all lanes

    defaults = await (await client.get("/api/v1/get_default_bindings", headers=as_limited)).json()
    assert defaults["defaults"]["ttt_binding"] is None
    assert defaults["defaults"]["ttt_model"] is None
    assert defaults["defaults"]["tti_binding"] == "echo"  # what it may use stays

    refusals = [
        ("/api/v1/generate", {"binding_name": "nope", "input_data": prompt}),  # no such one
        (
            "/api/v1/generate",
            {"binding_name": HIDDEN, "generation_type": "tti", "input_data": prompt},
        ),  # exists, cannot do tti
        ("/api/v1/generate", {"input_data": prompt}),  # the hidden default
        (
            "/v1/chat/completions",
            {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "x"}]},
        ),
    ]
    for path, body in refusals:
        response = await client.post(path, json=body, headers=as_limited)
        text = await response.text()
        assert response.status == 403, (path, body, text)
        if body.get("binding_name") != HIDDEN:  # only a name the request gave is repeated
            assert HIDDEN not in text
        assert f"'{HIDDEN_MODEL}'" not in text and "echo/slow" not in text
        if "binding_name" not in body:  # the default: where to find what it may name instead
            assert "name a model it may use (GET /v1/models lists them" in text, text
    unknown = await client.post(
        "/api/v1/generate",
        json={"binding_name": "nope", "input_data": prompt},
        headers={"X-API-Key": admin, **FOREIGN},
    )
    assert unknown.status == 404 and HIDDEN in await unknown.text()  # an admin sees them all


async def test_keys_api_refuses_empty_allow_lists_and_fractional_limits(client: Client) -> None:
    for body in (
        {"name": "k", "allowed_bindings": []},
        {"name": "k", "allowed_models": []},
        {"name": "k", "rpm": 2.9},
        {"name": "k", "max_concurrent": 1.99},
        {"name": "k", "tpm": 1.5},
    ):
        response = await client.post("/api/v1/keys", json=body)
        assert response.status == 422, (body, await response.text())
        field = next(iter(set(body) - {"name"}))
        assert (await response.json())["error"]["param"] == field
    whole = await client.post("/api/v1/keys", json={"name": "k", "rpm": 3.0, "tpm": "7"})
    assert whole.status == 201
    record = await whole.json()
    assert (record["rpm"], record["tpm"]) == (3, 7)
    assert record["allowed_bindings"] is None  # left out: no limit


async def test_a_fractional_max_tokens_is_a_400_on_every_face(client: Client) -> None:
    messages = [{"role": "user", "content": "x"}]
    chat = await client.post(
        "/v1/chat/completions", json={"model": "echo/echo", "messages": messages, "max_tokens": 1.5}
    )
    assert chat.status == 400 and "max_tokens" in await chat.text()
    ollama = await client.post(
        "/api/chat",
        json={"model": "echo/echo", "messages": messages, "options": {"num_predict": 2.5}},
    )
    assert ollama.status == 400, await ollama.text()
    lollms = await client.post(
        "/api/v1/generate",
        json={"input_data": [{"type": "text", "data": "x"}], "parameters": {"max_tokens": 2.5}},
    )
    assert lollms.status in (400, 422), await lollms.text()


async def test_the_key_store_refuses_an_empty_allow_list(client: Client) -> None:
    """The CLI and the pages reach the store without the API's schema: `--models ""` too."""
    store = client.server.app[KEYSTORE]
    for lists in ({"allowed_bindings": []}, {"allowed_models": []}):
        with pytest.raises(InvalidRequest, match="admit nothing"):
            await store.create("k", "user", **lists)
    assert _split("") == [] and _split(None) is None and _split("a, b,") == ["a", "b"]


async def test_a_refused_route_names_only_the_route(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A key refused a route is told the route's name, never its targets (a fleet node's
    host-port instance and its model names leaked in the 403 message)."""
    bindings = {"echo": {"type": "echo"}, HIDDEN: {"type": "echo"}}
    routes = {"chat": [f"{HIDDEN}/{HIDDEN_MODEL}", "echo/echo"]}
    client = await make_client(make_config({"bindings": bindings, "routes": routes}))
    key, _ = await client.server.app[KEYSTORE].create("u", "user", allowed_models=["echo/echo"])
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    answer = await client.post(
        "/v1/chat/completions", json=body, headers={"X-API-Key": key, **FOREIGN}
    )
    text = await answer.text()
    assert answer.status == 403 and "'chat'" in text, text
    assert HIDDEN not in text and HIDDEN_MODEL not in text, text


async def test_a_limited_key_learns_no_size_of_models_it_may_not_use(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A hidden 300 MiB model and a visible 7 MiB one are loaded. Before, `/api/v1/status`
    told the limited key `used_by_models_bytes` 307 MiB and the dashboard '2' models, '307.0
    MiB' on cpu: the hidden model's size was the difference. Now both count only the models
    the key may use; an admin key still sees both."""
    bindings = {
        "echo": {"type": "echo", "model_memory_mb": 7},
        HIDDEN: {"type": "echo", "model_memory_mb": 300},
    }
    client = await make_client(make_config({"bindings": bindings, "defaults": ECHO_DEFAULTS}))
    store = client.server.app[KEYSTORE]
    limited, _ = await store.create("limited", "user", allowed_bindings=["echo"])
    admin, _ = await store.create("admin", "admin")
    for instance in ("echo", HIDDEN):
        body = {"binding_name": instance, "model_name": "echo"}
        loaded = await client.post("/api/v1/load_model", json=body, headers={"X-API-Key": admin})
        assert loaded.status == 200, await loaded.text()
    for key, mib, count in ((limited, 7, 1), (admin, 307, 2)):
        status = await (await client.get("/api/v1/status", headers={"X-API-Key": key})).json()
        (cpu,) = status["devices"]
        assert cpu["used_by_models_bytes"] == mib * 2**20, (key == admin, status)
        page = await client.get("/", headers={"X-API-Key": key, "HX-Request": "true"})
        html = await page.text()
        row = html.split('id="device-memory"', 1)[1].split("</table>", 1)[0]
        assert f'<td class="num">{count}</td>' in row and f"{mib:.1f} MiB" in row, row


@pytest.mark.parametrize("default", ["echo", HIDDEN])
async def test_a_limited_key_cannot_tell_a_hidden_instance_from_none(
    make_client: MakeClient, make_config: MakeConfig, default: str
) -> None:
    """Before, the OpenAI and Ollama faces answered `<hidden instance>/x` with 403 'may not
    use model 'x' of instance ...' and `<no instance>/x` with 404 (or a 403 naming no
    instance): a key limited to `echo` could list the server's instance names by trying them.
    Both are now a bare model name of the ttt default (404 when the key may use it, else 403),
    word for word the same answer but for the name."""
    bindings = {"echo": {"type": "echo"}, HIDDEN: {"type": "echo"}}
    defaults = {**ECHO_DEFAULTS, "ttt": default}
    client = await make_client(make_config({"bindings": bindings, "defaults": defaults}))
    limited, _ = await client.server.app[KEYSTORE].create("l", "user", allowed_bindings=["echo"])
    as_limited = {"X-API-Key": limited, **FOREIGN}
    messages = [{"role": "user", "content": "x"}]

    async def answer(path: str, model: str) -> tuple[int, str]:
        body = {"model": model, "messages": messages, "stream": False}
        response = await client.post(path, json=body, headers=as_limited)
        text = (await response.text()).replace(model, "<name>")
        return response.status, text.replace(model.removesuffix(":latest"), "<name>")

    for path in ("/v1/chat/completions", "/api/chat", "/api/show"):
        for model in ("x", HIDDEN_MODEL, f"{HIDDEN_MODEL}:latest"):
            hidden = await answer(path, f"{HIDDEN}/{model}")
            nowhere = await answer(path, f"nowhere-at-all/{model}")
            assert hidden == nowhere, (path, model, hidden, nowhere)
            status = 404 if default == "echo" else 403
            assert hidden[0] == status and HIDDEN not in hidden[1], (path, model, hidden)
