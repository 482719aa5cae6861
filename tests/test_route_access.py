"""Every route declares who may call it; a route that does not is refused to everyone."""

from __future__ import annotations

import types
from typing import Any

from aiohttp import web
from conftest import MakeClient, MakeConfig

from lollms_server.app import create_app
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins
from lollms_server.security.auth import declared_access, requires

FOREIGN = {"Host": "elsewhere.example"}


def _plugin(**routes: Any) -> types.SimpleNamespace:
    """A plugin registering `routes` (path -> handler) as GET routes."""
    table = [web.get(path, handler) for path, handler in routes.items()]
    return types.SimpleNamespace(register_routes=hookimpl(lambda: table))


@requires("user")
async def declared(request: web.Request) -> web.Response:
    """A plugin route that says who may call it."""
    return web.json_response({"hi": True})


async def undeclared(request: web.Request) -> web.Response:
    """A plugin route that says nothing."""
    return web.json_response({"secret": True})


def _every_route(app: web.Application, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(method, path, declared access) of every route, sub-applications included."""
    found: list[tuple[str, str, Any]] = []
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            found += _every_route(resource.get_info()["app"])
            continue
        for route in resource:
            access = declared_access(route.handler, resource)
            found.append((route.method, resource.canonical, access))
    return found


def test_every_route_declares_its_access_level(make_config: MakeConfig) -> None:
    """Pages, the three API faces, static files and plugin routes: none without a level."""
    plugins = load_plugins(extra={"greeter": _plugin(**{"/hello": declared})})
    app = create_app(make_config(), plugins=plugins)
    routes = _every_route(app)
    paths = {path for _, path, _ in routes}
    expected = ["/bindings/{instance}/load", "/playground/chat", "/v1/chat/completions"]
    expected += ["/api/tags", "/api/v1/generate", "/static", "/-/greeter/hello", "/login"]
    assert set(expected) <= paths, set(expected) - paths
    missing = [f"{method} {path}" for method, path, access in routes if access is None]
    assert not missing, f"routes without a declared access level: {missing}"
    levels = {(method, path): access for method, path, access in routes}
    assert levels[("POST", "/bindings/{instance}/load")] == "admin"
    assert levels[("POST", "/bindings/{instance}/unload")] == "admin"
    assert levels[("POST", "/api/v1/load_model")] == "admin"


async def test_a_route_without_a_declared_level_is_refused(make_client: MakeClient) -> None:
    """Fail closed: even the local admin gets a 403 from a plugin route that declares nothing."""
    plugin = _plugin(**{"/open": undeclared, "/fine": declared})
    client = await make_client(plugins=load_plugins(extra={"careless": plugin}))
    for headers in ({}, FOREIGN):
        response = await client.get("/-/careless/open", headers=headers)
        assert response.status == 403 and "declares no access level" in await response.text()
    assert (await client.get("/-/careless/fine")).status == 200
    assert (await client.get("/-/careless/fine", headers=FOREIGN)).status == 401
