"""`[fleet]` and `{fleet = true}` routes in the config schema (the process tests are in
plugins/lollms-remote/tests/test_fleet.py)."""

from __future__ import annotations

import pytest

from lollms_server.config import parse_config
from lollms_server.errors import ConfigError


def test_fleet_nodes_become_lollms_instances_with_the_fleet_key() -> None:
    config = parse_config(
        {
            "fleet": {"nodes": ["http://gpu1:9601", "http://10.0.0.2:9601"], "api_key_env": "K"},
            "routes": {"llama3": {"fleet": True}},
        }
    )
    assert {n: (i.type, i.settings) for n, i in config.bindings.items()} == {
        "gpu1-9601": ("lollms", {"base_url": "http://gpu1:9601", "api_key_env": "K"}),
        "10.0.0.2-9601": ("lollms", {"base_url": "http://10.0.0.2:9601", "api_key_env": "K"}),
    }
    assert config.routes["llama3"] == {
        "targets": [], "strategy": "least-busy", "fleet": True, "model": None
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"fleet": {"nodes": ["ftp://gpu1:21"]}}, "fleet.nodes"),
        ({"fleet": {"nodes": ["http://gpu1:9601"]}, "bindings": {"gpu1-9601": {"type": "echo"}}},
         "already used"),
        ({"routes": {"x": {"fleet": True, "targets": ["a/b"]}}}, "routes.x"),
        ({"routes": {"x": {"fleet": True, "strategy": "random"}}}, "strategy"),
    ],
)  # fmt: skip
def test_bad_fleet_settings_are_config_errors(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config(raw)
