"""The dashboard shows each instance's circuit and, as its last error, only errors."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import Binding, Health
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
CHEERFUL = "all four models ready"


class Chatty(EchoBinding):
    """Echo whose health, while up, says something that is no error."""

    name = "chatty"

    async def health(self) -> Health:
        """Up, with a cheerful detail."""
        return Health("up", CHEERFUL, 0.0)


class ChattyPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Chatty]


def rows(page: str) -> dict[str, tuple[str, str]]:
    """Instance name -> (circuit, last error) from the dashboard's instances table."""
    found = re.findall(
        r'instance-([\w-]+)">.*?<td class="circuit-[\w-]+">([\w-]+)</td>\s*'
        r'<td class="last-error">(.*?)</td>',
        page,
        re.S,
    )
    return {name: (circuit, error) for name, circuit, error in found}


async def test_circuit_state_and_only_errors_as_last_error(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo"},
                "happy": {"type": "chatty", "default_model": "echo"},
            },
            "defaults": dict(ECHO_DEFAULTS),
            "resilience": {"failure_threshold": 1, "cooldown_s": 600, "health_interval_s": 0},
        }
    )
    client = await make_client(config, plugins=load_plugins(extra={"chatty": ChattyPlugin()}))
    before = rows(await (await client.get("/")).text())
    assert before == {"echo": ("closed", ""), "happy": ("closed", "")}
    body = {"model": "echo/fail", "messages": [{"role": "user", "content": "a b c"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status == 503
    after = rows(await (await client.get("/")).text())
    assert after["echo"][0] == "open" and "fails on purpose" in after["echo"][1]
    assert after["happy"] == ("closed", "")
    assert CHEERFUL not in after["happy"][1]


async def test_no_binding_instance_is_warned_on_the_dashboard(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    client = await make_client(make_config({"bindings": {}, "defaults": {}}))
    page = await (await client.get("/")).text()
    assert 'id="no-instances"' in page and "No binding instance" in page
    configured = await make_client(make_config())
    assert 'id="no-instances"' not in await (await configured.get("/")).text()
