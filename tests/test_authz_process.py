"""Authorization against real server processes (issue 12, "Authorization").

Two servers run for the module: `upstream`, a plain server with the echo binding and no keys,
and `main`, whose instance `paid` is an OpenAI binding in front of `upstream` (so it serves a
model literally named `echo/echo`), next to echo instances `echo` and `spare`. Keys are made
with the CLI; "remote" requests carry a non-loopback Host, so only the key decides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from authz_world import ScriptStream, World, streaming, world

from lollms_server.web.pages import routes as page_routes

__all__ = ["world"]  # the module-scoped fixture


# --- page routes obey the API's rules --------------------------------------------------------

ADMIN_PAGES = {
    "/admin/keys",
    "/admin/keys/{key_id}/revoke",
    "/admin/audit",
    "/bindings/{instance}/load",
    "/bindings/{instance}/unload",
    "/personalities/reload",
}
PUBLIC_PAGES = {"/login", "/logout", "/api-docs"}
PATH_VALUES = {"instance": "echo", "key_id": "000000000000", "name": "hold", "stream_id": "none"}


def page_cases() -> list[tuple[str, str]]:
    """(method, path) of every page route, path parameters filled, plus a static file."""
    cases = [("GET", "/static/style.css")]
    for route in page_routes:
        method, path = route.method, route.path  # type: ignore[attr-defined]
        cases.append((method, path.format(**PATH_VALUES)))
    return cases


def expected_access(method: str, path: str) -> str:
    """What the matrix expects of a filled-in page path: public, user or admin."""
    for route in page_routes:
        template = route.path  # type: ignore[attr-defined]
        if template.format(**PATH_VALUES) == path:
            if template in ADMIN_PAGES:
                return "admin"
            return "public" if template in PUBLIC_PAGES else "user"
    return "public"  # the static file


def test_page_routes_auth_matrix(world: World) -> None:
    """No key, user key, restricted user key, admin key, cookie and local access, on every
    page route: 401 (or, for a page a browser opens, the login page) without a credential,
    403 for a user on an admin page, never refused where the role suffices."""
    main = world.main
    credentials: dict[str, dict[str, Any]] = {
        "no key": {},
        "user key": {"key": world.user},
        "restricted key": {"key": world.restricted},
        "admin key": {"key": world.admin},
        "user cookie": {"cookie": world.user},
        "local": {"local": True},
    }
    wrong: list[str] = []
    for method, path in page_cases():
        access = expected_access(method, path)
        form = {"model": "echo"} if method == "POST" else None
        for name, how in credentials.items():
            reply = main.call(method, path, form=form, **how)
            status = reply.status
            to_login = status == 303 and reply.headers.get("Location", "").startswith("/login")
            is_admin = name in ("admin key", "local")
            if access == "public" or (access == "user" and name != "no key") or is_admin:
                ok = status not in (401, 403)
            elif name == "no key":  # a browser is sent to the login page
                ok = status == 401 or (method == "GET" and to_login)
            else:
                ok = status == 403
            if not ok:
                wrong.append(f"{name}: {method} {path} -> {status} (route is {access})")
    assert not wrong, "\n".join(wrong)


def test_page_load_unload_go_through_the_model_service(world: World, tmp_path: Path) -> None:
    """Admin only, the key's allow-list, pinned and busy models kept, an audit row: the same
    rules as /api/v1/load_model|unload_model, on both."""
    main = world.main
    scoped_admin = main.key("scoped-admin", "--role", "admin", "--models", "echo/echo")
    user = main.call("POST", "/bindings/echo/load", key=world.user, form={"model": "echo"})
    assert user.status == 403
    for path, request in (
        ("/bindings/spare/load", {"form": {"model": "echo"}}),
        ("/api/v1/load_model", {"body": {"binding_name": "spare", "model_name": "echo"}}),
    ):
        assert main.call("POST", path, key=scoped_admin, **request).status == 403, path
    for path, request in (
        ("/bindings/spare/unload", {"form": {"model": "slow"}}),
        ("/api/v1/unload_model", {"body": {"binding_name": "spare", "model_name": "slow"}}),
    ):
        reply = main.call("POST", path, key=world.admin, **request)
        assert reply.status == 409 and "pinned" in reply.text, (path, reply.status)
    loaded = main.call("POST", "/bindings/echo/load", key=world.admin, form={"model": "echo"})
    assert loaded.status == 303
    rows = [r for r in main.audit(world.admin, "load") if r["path"] == "/bindings/echo/load"]
    assert rows and rows[0]["status"] == 200 and rows[0]["model"] == "echo"
    with streaming(main, world.admin, "echo/slow", "word " * 300):  # a running generation
        for path, request in (
            ("/bindings/echo/unload", {"form": {"model": "slow"}}),
            ("/api/v1/unload_model", {"body": {"binding_name": "echo", "model_name": "slow"}}),
        ):
            reply = main.call("POST", path, key=world.admin, **request)
            assert reply.status == 409 and "busy" in reply.text, (path, reply.status)
    refused = [r for r in main.audit(world.admin, "unload") if r["status"] == 409]
    assert len(refused) >= 4


def test_page_reload_is_audited_like_its_api_twin(world: World) -> None:
    """`/personalities/reload` and `/api/v1/reload_personalities` share one audited action."""
    main = world.main
    assert main.call("POST", "/personalities/reload", key=world.admin, form={}).status == 200
    api = main.call("POST", "/api/v1/reload_personalities", key=world.admin, body={})
    assert api.status == 200
    paths = [row["path"] for row in main.audit(world.admin, "library_reloaded")]
    assert {"/personalities/reload", "/api/v1/reload_personalities"} <= set(paths), paths


# --- allow-lists match exactly -----------------------------------------------------------------


def test_allow_list_entry_names_an_instance_and_a_model(world: World) -> None:
    """A key allowed `echo/echo` may not use `paid/echo/echo` (a model named `echo/echo`)."""
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    main = world.main
    allowed = main.call("POST", "/v1/chat/completions", key=world.restricted,
                        body={**chat, "model": "echo/echo"})  # fmt: skip
    assert allowed.status == 200, allowed.text
    other = main.call("POST", "/v1/chat/completions", key=world.restricted,
                      body={**chat, "model": "paid/echo/echo"})  # fmt: skip
    assert other.status == 403, other.text
    # the model is real: the admin reaches it through `paid`
    through = main.call("POST", "/v1/chat/completions", key=world.admin,
                        body={**chat, "model": "paid/echo/echo"})  # fmt: skip
    assert through.status == 200, through.text


# --- listings show only what a key may use ----------------------------------------------------


def test_listings_show_only_what_a_key_may_use(world: World) -> None:
    main, admin, key = world.main, world.admin, world.restricted
    for model in ("echo", "think"):
        body = {"binding_name": "echo", "model_name": model}
        assert main.call("POST", "/api/v1/load_model", key=admin, body=body).status == 200

    def get(path: str, who: str) -> Any:
        reply = main.call("GET", path, key=who)
        assert reply.status == 200, (path, reply.status, reply.text)
        return reply.json()

    assert [m["id"] for m in get("/v1/models", key)["data"]] == ["echo/echo"]
    assert "paid/echo/echo" in [m["id"] for m in get("/v1/models", admin)["data"]]
    assert [m["name"] for m in get("/api/tags", key)["models"]] == ["echo/echo:latest"]
    assert [m["name"] for m in get("/api/ps", key)["models"]] == ["echo/echo:latest"]
    assert "echo/think:latest" in [m["name"] for m in get("/api/ps", admin)["models"]]
    listed = get("/api/v1/list_models?format=lollms-server", key)["models"]
    assert {i: [m["name"] for m in ms] for i, ms in listed.items()} == {"echo": ["echo"]}
    available = get("/api/v1/list_available_models/echo", key)["models"]
    assert [m["name"] for m in available] == ["echo"]
    assert main.call("GET", "/api/v1/list_available_models/paid", key=key).status == 404
    assert main.call("GET", "/v1/models/spare/echo", key=key).status == 404
    assert list(get("/api/v1/list_bindings", key)["binding_instances"]) == ["echo"]
    assert list(get("/api/v1/list_active_bindings", key)["bindings"]) == ["echo"]
    assert set(get("/api/v1/list_active_bindings", admin)["bindings"]) == {"echo", "spare", "paid"}
    spare_only = main.key("spare-only", "--bindings", "spare")
    ids = [m["id"] for m in get("/v1/models", spare_only)["data"]]
    assert ids and all(i.startswith("spare/") for i in ids), ids
    assert list(get("/api/v1/list_models", spare_only)["models"]) == ["spare"]
    for page in ("/models", "/bindings"):
        mine = main.call("GET", page, key=key).text
        everything = main.call("GET", page, key=admin).text
        assert "spare" in everything and "paid" in everything
        assert "spare" not in mine and "paid" not in mine, page


# --- fail closed ------------------------------------------------------------------------------


def test_generation_with_no_known_caller_is_refused(world: World) -> None:
    """A script that generates from a thread of its own has no caller: refused; from its own
    worker (the documented way) it runs as the request's caller."""
    main = world.main
    body = {"input_data": [{"type": "text", "data": "hello"}]}
    refused = main.call("POST", "/api/v1/generate", key=world.admin,
                        body={**body, "personality": "own_thread"})  # fmt: skip
    assert refused.status == 403 and "no caller" in refused.text, refused.text
    works = main.call("POST", "/api/v1/generate", key=world.admin,
                      body={**body, "personality": "in_worker"})  # fmt: skip
    assert works.status == 200 and "hello" in works.text, works.text


# --- the first admin key only from the CLI ----------------------------------------------------


def test_first_admin_key_only_from_the_cli(world: World) -> None:
    """`upstream` has no key: over HTTP, even locally, no admin key until the CLI made one."""
    server = world.upstream
    admin = {"name": "first", "role": "admin"}
    refused = server.call("POST", "/api/v1/keys", local=True, body=admin)
    assert refused.status == 403 and "CLI" in refused.text
    page = server.call("POST", "/admin/keys", local=True, form=admin)
    assert page.status == 403
    user = server.call("POST", "/api/v1/keys", local=True, body={"name": "u", "role": "user"})
    assert user.status == 201
    server.key("from-cli", "--role", "admin")
    assert server.call("POST", "/api/v1/keys", local=True, body=admin).status == 201


# --- scripted personalities are generations ----------------------------------------------------


def test_scripts_are_audited_and_counted(world: World, tmp_path: Path) -> None:
    """A script's run takes the key's concurrency slot, needs token budget and is audited."""
    main = world.main
    single = main.key("single", "--concurrent", "1")
    marker = tmp_path / "go"
    body = {"personality": "hold", "input_data": [{"type": "text", "data": str(marker)}]}
    holder = ScriptStream(main, single, body)
    try:
        second = main.call("POST", "/api/v1/generate", key=single, body=body)
        assert second.status == 429, second.text
    finally:
        marker.touch()
        holder.finish()
    assert "done" in holder.text
    inner = {"personality": "in_worker", "input_data": [{"type": "text", "data": "inside"}]}
    nested = main.call("POST", "/api/v1/generate", key=single, body=inner)
    assert nested.status == 200, nested.text  # its own generation runs in the script's slot
    rows = [r for r in main.audit(world.admin, "generation") if r["key_id"] == single[7:19]]
    details = [
        json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"] for r in rows
    ]
    assert any((d or {}).get("script") == "hold" for d in details), rows
    frugal = main.key("frugal", "--tpm", "5")
    prompt = {"input_data": [{"type": "text", "data": "one two three four five six seven"}]}
    assert main.call("POST", "/api/v1/generate", key=frugal, body=prompt).status == 200
    spent = main.call("POST", "/api/v1/generate", key=frugal, body=body)
    assert spent.status == 429, spent.text
