"""The runbook's node procedures (`docs/operations.md`, "Add or remove a node") rehearsed with its
own blocks: a real node and a real gateway started the runbook's way; the gateway's key made on
the node, the node added to the gateway's config, the gateway restarted (drain, start) and
answering through the node; the node key rotated (new key, restart, old one revoked on the node);
the node removed again."""

from __future__ import annotations

import json
from pathlib import Path

from lollms_server.testing.runbook import KEY, RunbookServer, key_id


def node_key(node: RunbookServer) -> str:
    """The gateway's key, made on the node by the runbook's `node-key` block."""
    found = KEY.search(node.run("node-key"))
    assert found, "node-key printed no key"
    return found.group(0)


def restart(gateway: RunbookServer, key: str) -> None:
    """Drain and start the gateway with `key` as its LOLLMS_NODE_KEY (the secrets file)."""
    assert gateway.drain() == 0, gateway.log()
    gateway.values["LOLLMS_NODE_KEY"] = key
    gateway.start()


def test_add_a_node_rotate_its_key_and_remove_it(tmp_path: Path) -> None:
    node = RunbookServer(tmp_path / "node")
    gateway = RunbookServer(tmp_path / "gateway", backends="")
    try:
        for server in (node, gateway):
            server.values["ADMIN_KEY"] = server.create_key("admin", role="admin")
            server.start()
        client = gateway.values["ADMIN_KEY"]
        original = gateway.config.read_text(encoding="utf-8")
        first = node_key(node)
        gateway.run("add-node", NODE_NAME="gpu1", NODE_URL=node.values["LOLLMS_URL"])
        restart(gateway, first)
        listed = json.loads(gateway.run("check-backend"))["bindings"]
        assert listed["gpu1"]["health"]["state"] == "up", listed
        gateway.chat(client, model="gpu1/echo/echo")

        second = node_key(node)
        restart(gateway, second)
        node.run("rotate-revoke", OLD_KEY_ID=key_id(first))
        assert node.status(first) == 401
        gateway.chat(client, model="gpu1/echo/echo")  # through the new key

        gateway.config.write_text(original, encoding="utf-8")  # "delete its table"
        restart(gateway, second)
        assert "gpu1" not in json.loads(gateway.run("check-backend"))["bindings"]
        assert node.drain() == 0, node.log()
        node.run("rotate-revoke", OLD_KEY_ID=key_id(second))
    finally:
        node.kill()
        gateway.kill()
