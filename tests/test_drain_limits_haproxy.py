"""A key's per-minute limit shared through Redis by two replicas behind the shipped HAProxy
config, during a drain: a generation that the draining replica refuses (503 `draining`, nothing
started) and HAProxy resends to the other replica is counted once, not once per replica it
reached (each retried request cost the key two of its requests)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
from pathlib import Path

from test_deploy_haproxy import HAPROXY_CFG, haproxy_binary, server_states, wait_until

from lollms_server.testing import free_port
from lollms_server.testing.process import SERVER_COMMAND, request_count, server_env, toml_table
from lollms_server.testing.replica import Replica
from lollms_server.testing.services import redis_server

RPM = 40
ECHO = '[bindings.echo]\ntype = "echo"\ndelay_ms = 200\n'  # echo/slow: 200 ms a token


def post(port: int, key: str, path: str, body: object) -> tuple[int, dict[str, str], bytes]:
    """One POST on its own connection: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "X-API-Key": key}
        conn.request("POST", path, json.dumps(body), headers)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def hold_stream(port: int, key: str, started: threading.Event) -> None:
    """A slow lollms stream (about 4 s): `started` once its first event is in."""
    slow = {
        "input_data": [{"type": "text", "data": " ".join(["w"] * 20)}],
        "binding_name": "echo", "model_name": "slow", "stream": True,
    }  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "X-API-Key": key}
        conn.request("POST", "/api/v1/generate", json.dumps(slow), headers)
        reply = conn.getresponse()
        reply.readline()
        started.set()
        reply.read()
    finally:
        conn.close()


def chat(port: int, key: str) -> tuple[int, dict[str, str], bytes]:
    """A short whole OpenAI chat."""
    ask = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    return post(port, key, "/v1/chat/completions", ask)


def test_a_generation_refused_by_a_draining_replica_counts_once(tmp_path: Path) -> None:
    """Replica 1 drains (a slow stream keeps it draining) while chats go through HAProxy:
    the ones it refuses (its log shows them) are resent to replica 2, all are answered
    200, and the key's remaining requests are its rpm less the chats sent, not less the
    retries as well."""
    binary = haproxy_binary()
    with redis_server(tmp_path / "redis") as redis:
        replicas = [Replica(f"replica{n}", tmp_path / f"r{n}", tmp_path / "data") for n in (1, 2)]
        configs = []
        for replica in replicas:
            server = {"host": "127.0.0.1", "port": replica.port, "drain_timeout_s": 30}
            security = {"local_access": False, "rate_limit_storage": redis.limits_uri}
            config = tmp_path / f"{replica.name}.toml"
            config.write_text(
                toml_table("server", server) + "\n" + toml_table("security", security) + "\n" + ECHO
            )
            configs.append(config)
        keys = [
            subprocess.run(
                [*SERVER_COMMAND, "--config", str(configs[0]), "keys", "create", "--name", name,
                 "--role", role, *extra],
                env=server_env(tmp_path / "data"), capture_output=True, text=True, check=True,
                timeout=60,
            ).stdout.strip()
            for name, role, extra in (("admin", "admin", ()), ("user", "user", ("--rpm", str(RPM))))
        ]  # fmt: skip
        admin, user = keys
        ports = {"front": free_port(), "stats": free_port()}
        env = {
            **os.environ,
            "LOLLMS_LB_BIND": f"127.0.0.1:{ports['front']}",
            "LOLLMS_LB_STATS": f"127.0.0.1:{ports['stats']}",
            "LOLLMS_REPLICA1": f"127.0.0.1:{replicas[0].port}",
            "LOLLMS_REPLICA2": f"127.0.0.1:{replicas[1].port}",
        }
        for replica, config in zip(replicas, configs, strict=True):
            replica.start(config)
        with (tmp_path / "haproxy.log").open("wb") as log:
            haproxy = subprocess.Popen(
                [binary, "-f", str(HAPROXY_CFG), "-db"], env=env, stdout=log, stderr=log
            )
        try:
            for replica in replicas:
                wait_until(replica.ready, f"{replica.name} ready")
            up = {"replica1": "UP", "replica2": "UP"}
            wait_until(lambda: server_states(ports["stats"]) == up, "both replicas UP")
            # a slow stream straight to replica 1 (the admin key): it drains for seconds
            started = threading.Event()
            stream = threading.Thread(target=hold_stream, args=(replicas[0].port, admin, started))
            stream.start()
            assert started.wait(30), "the slow stream did not start"
            assert replicas[0].process is not None
            replicas[0].process.terminate()
            wait_until(lambda: not replicas[0].ready(), "replica1 draining", 5)
            statuses = [chat(ports["front"], user)[0] for _ in range(8)]
            status, headers, body = chat(replicas[1].port, user)
            stream.join(60)
        finally:
            haproxy.terminate()
            haproxy.wait(10)
            for replica in replicas:
                if replica.running():
                    replica.kill()
    log = (replicas[0].folder / "server.log").read_text(errors="replace")  # flushed at exit
    refused = request_count(log, "POST", "/v1/chat/completions", 503)
    assert statuses == [200] * 8, statuses
    assert status == 200, body
    assert refused > 0, "replica1 refused nothing: HAProxy had it out before the chats"
    sent = len(statuses) + 1
    remaining = int(headers["X-RateLimit-Remaining"])
    assert remaining == RPM - sent, f"{remaining} left of {RPM} after {sent} ({refused} resent)"
