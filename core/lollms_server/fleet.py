"""A fleet: one gateway in front of many lollms-server nodes.

`[fleet] nodes = ["http://gpu1:9601", ...]` makes one `lollms` binding instance per node
(named after its host and port), and a route `"llama3" = {fleet = true}` has every `lollms`
instance whose node lists the model as a target, least busy first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from yarl import URL

from .errors import ConfigError

FLEET_TYPE = "lollms"  # the binding type of plugins/lollms-remote


def node_name(url: str) -> str:
    """The instance name of a node: its host and port (`gpu1-9601`)."""
    parsed = URL(url)
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", parsed.host or "node").strip("-.") or "node"
    return f"{host}-{parsed.port}"[:64]


def fleet_instances(
    fleet: Mapping[str, Any], configured: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The `lollms` instance settings of each `[fleet]` node, by instance name."""
    instances: dict[str, dict[str, Any]] = {}
    for url in fleet.get("nodes", []):
        name = node_name(url)
        if name in configured or name in instances:
            raise ConfigError(f"fleet.nodes: {url!r} gives instance name {name!r}, already used")
        settings: dict[str, Any] = {"base_url": url}
        for key in ("api_key", "api_key_env"):
            if fleet.get(key):
                settings[key] = fleet[key]
        instances[name] = settings
    return instances
