"""A broken plugin's error names files of the server: shown whole to admins only."""

from __future__ import annotations

from typing import Any

from conftest import MakeClient, MakeConfig

from lollms_server.bindings import Binding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import KEYSTORE
from lollms_server.plugins import load_plugins

WHERE = "/opt/lollms/venv/lib/python3.11/site-packages/lollms_gone/__init__.py"


class ImportBroken:
    """Fails as a plugin with a missing name fails: Python's message holds the module's path."""

    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        raise ImportError(f"cannot import name 'Gone' from 'lollms_gone' ({WHERE})")


async def test_plugin_errors_name_no_server_file_to_others(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """Before, the public `GET /api/v1/health` told anyone the plugin's absolute path (and
    `list_bindings`, the dashboard and the bindings page told any user key); now they read
    `__init__.py`, an admin key the path."""
    plugins = load_plugins(extra={"gone": ImportBroken()})
    config = make_config({"bindings": {"echo": {"type": "echo"}}, "defaults": {"ttt": "echo"}})
    client: Any = await make_client(config, plugins=plugins)
    store = client.server.app[KEYSTORE]
    user, _ = await store.create("user", "user")
    admin, _ = await store.create("admin", "admin")
    remote = {"Host": "evil.example"}  # not this machine: no local access
    callers = {"anonymous": remote, "user": {**remote, "X-API-Key": user}}
    callers["admin"] = {**remote, "X-API-Key": admin}
    for who, headers in callers.items():
        paths = ["/api/v1/health"] + ([] if who == "anonymous" else
                 ["/api/v1/list_bindings", "/", "/bindings"])  # fmt: skip
        for path in paths:
            response = await client.get(path, headers=headers)
            text = await response.text()
            assert response.status == 200 and "lollms_gone" in text, (who, path, text[:300])
            assert (WHERE in text) is (who == "admin"), (who, path)
            assert who == "admin" or "__init__.py" in text, (who, path)
