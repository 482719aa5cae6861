"""Client addresses and `ip_rpm` behind the shipped HAProxy config (a real HAProxy, unchanged
config, in front of one real lollms-server that trusts it). The client connects from
127.0.0.2, HAProxy reaches the server from 127.0.0.1 (the only trusted proxy), so the server
must find 127.0.0.2 in the forwarding headers, whatever the client wrote there itself."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_deploy_haproxy import HAPROXY_CFG, haproxy_binary, server_states, wait_until

from lollms_server.testing import free_port
from lollms_server.testing.process import SERVER_COMMAND, server_env, toml_table
from lollms_server.testing.replica import Replica

CLIENT = "127.0.0.2"  # a loopback address that is not the trusted proxy's


@dataclass
class Front:
    """HAProxy's front port, its stats port, the server behind it and an admin key."""

    port: int
    stats: int
    replica: Replica
    admin: str

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """GET through HAProxy from CLIENT; the status and the JSON body (None if not JSON)."""
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(CLIENT, 0)
        )
        try:
            conn.request("GET", path, headers={"Host": "api.example", **(headers or {})})
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        try:
            return reply.status, json.loads(body)
        except ValueError:
            return reply.status, None


@contextmanager
def start(tmp_path: Path, ip_rpm: int) -> Iterator[Front]:
    """The server (trusting 127.0.0.1, `ip_rpm`), HAProxy in front, both replica slots on it."""
    replica = Replica("replica", tmp_path / "replica", tmp_path / "data")
    config = tmp_path / "lollms.toml"
    server = {"host": "127.0.0.1", "port": replica.port}
    security = {"local_access": False, "trusted_proxies": ["127.0.0.1/32"], "ip_rpm": ip_rpm}
    config.write_text(
        toml_table("server", server) + "\n" + toml_table("security", security) + "\n"
        '[bindings.echo]\ntype = "echo"\n',
        encoding="utf-8",
    )
    made = subprocess.run(
        [*SERVER_COMMAND, "--config", str(config), "keys", "create", "--name", "a", "--role",
         "admin"],
        env=server_env(replica.data_dir), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    ports = {"front": free_port(), "stats": free_port()}
    env = {
        **os.environ,
        "LOLLMS_LB_BIND": f"127.0.0.1:{ports['front']}",
        "LOLLMS_LB_STATS": f"127.0.0.1:{ports['stats']}",
        "LOLLMS_REPLICA1": f"127.0.0.1:{replica.port}",
        "LOLLMS_REPLICA2": f"127.0.0.1:{replica.port}",
    }
    binary = haproxy_binary()
    replica.start(config)
    with (tmp_path / "haproxy.log").open("wb") as log:
        haproxy = subprocess.Popen(
            [binary, "-f", str(HAPROXY_CFG), "-db"], env=env, stdout=log, stderr=log
        )
    try:
        wait_until(replica.ready, "the server to be ready")
        wait_until(
            lambda: set(server_states(ports["stats"]).values()) == {"UP"}, "HAProxy to see it UP"
        )
        yield Front(ports["front"], ports["stats"], replica, made.stdout.strip())
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        replica.kill()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    """No address limit: what the server records as the client's address."""
    with start(tmp_path, ip_rpm=0) as started:
        yield started


def test_a_client_cannot_choose_its_address_behind_haproxy(front: Front) -> None:
    """HAProxy adds its X-Forwarded-For line after the client's: before, the server read the
    first line only, so the client's own `10.9.9.9` became its address (audit rows, logs,
    `ip_rpm`: a new address per request escaped the limit)."""
    bad = "lollms_0123456789ab_" + "x" * 43
    status, _ = front.get("/v1/models", {"X-Forwarded-For": "10.9.9.9", "X-API-Key": bad})
    assert status == 401
    status, body = front.get("/api/v1/audit?event=auth_failed", {"X-API-Key": front.admin})
    assert status == 200, body
    clients = {row["client"] for row in body["events"]}
    assert clients == {CLIENT}, clients


def test_ip_rpm_holds_behind_haproxy_and_spares_its_health_checks(tmp_path: Path) -> None:
    """`ip_rpm = 5`: the client's sixth request is a 429 whatever X-Forwarded-For it writes,
    and HAProxy's own health checks (one a second from the trusted proxy) are no client: the
    server stays UP. Before, the checks were limited as 127.0.0.1's requests, so after five
    seconds `/api/v1/ready` answered 429 and HAProxy took the server out (503 for everyone)."""
    with start(tmp_path, ip_rpm=5) as front:
        statuses = [front.get("/v1/models", {"X-Forwarded-For": f"10.0.0.{n}"})[0]
                    for n in range(8)]  # fmt: skip
        assert statuses == [401] * 5 + [429] * 3, statuses
        time.sleep(8)  # eight health checks at least (`inter 1s`)
        assert set(server_states(front.stats).values()) == {"UP"}
        health = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
        health.request("GET", "/api/v1/health", headers={"Host": "api.example"})
        assert health.getresponse().status == 200  # before: 503, no server UP
        health.close()


def test_the_shipped_replica_config_trusts_no_range_clients_connect_from(tmp_path: Path) -> None:
    """deploy/lollms.toml as shipped (its backends replaced by echo) behind HAProxy on this host:
    a client on a private network (192.168.1.50, as HAProxy's `option forwardfor` appends it)
    that wrote its own `X-Forwarded-For` is still 192.168.1.50 in the log and the audit.
    Before, the file trusted every RFC 1918 range, so such hops were skipped as proxies': a
    client on a private network was HAProxy's own address, or any public one it wrote."""
    shipped = (HAPROXY_CFG.parents[1] / "lollms.toml").read_text(encoding="utf-8")
    head, found, _ = shipped.partition("# --- backends")
    assert found
    config = tmp_path / "lollms.toml"
    config.write_text(head + '[bindings.echo]\ntype = "echo"\n', encoding="utf-8")
    replica = Replica("replica", tmp_path / "replica", tmp_path / "data")
    env = {
        "LOLLMS_DATABASE_URL": f"sqlite:///{tmp_path / 'lollms.sqlite'}",
        "LOLLMS_RATE_LIMIT_STORAGE": "async+memory://",
        "LOLLMS_HOST": "127.0.0.1",
        "LOLLMS_PORT": str(replica.port),
    }
    key = subprocess.run(
        [*SERVER_COMMAND, "--config", str(config), "keys", "create", "--name", "k"],
        env={**server_env(replica.data_dir), **env}, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    replica.start(config, env)
    try:
        wait_until(replica.ready, "the replica ready")
        for written in ("10.9.9.9", "8.8.8.8"):  # what the client wrote itself
            conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
            request_id = written.replace(".", "x") * 4
            forwarded = {"X-Forwarded-For": f"{written}, 192.168.1.50", "X-Request-Id": request_id}
            conn.request("GET", "/v1/models", headers={"X-API-Key": key, **forwarded})
            assert conn.getresponse().status == 200
            conn.close()
            lines = [json.loads(line) for line in replica.log().splitlines() if request_id in line]
            assert [line["client"] for line in lines] == ["192.168.1.50"], (written, lines)
    finally:
        assert replica.stop() == 0
