"""Two real server processes sharing one data dir and one real redis-server: a key's requests
per minute hold across both replicas (no overshoot, even under parallel requests), a key created
or revoked on one replica is accepted or refused by the other within 1 s (keys in SQLite, then
in a real PostgreSQL: no replica caches a key, each request reads it), and a Redis that stops
answering lets requests through with a logged warning (`rate_limit_on_storage_error = "allow"`,
the default) or refuses them with a 503 naming it (`"refuse"`)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lollms_server.app import create_app
from lollms_server.config import parse_config
from lollms_server.errors import ConfigError
from lollms_server.testing.fixtures import free_port
from lollms_server.testing.postgres import postgres_server
from lollms_server.testing.process import (
    SERVER_COMMAND,
    ServerProcess,
    lollms_process,
    server_env,
)
from lollms_server.testing.services import RedisServer, redis_server

CONFIG = """
[bindings.echo]
type = "echo"
delay_ms = 40

[security]
local_access = false
rate_limit_storage = "{storage}"
"""
ROUTE = "/api/v1/list_bindings"  # a cheap user route: every call counts against the key's rpm
PROPAGATION_S = 1.0  # the bound for a key change to reach every replica


@dataclass
class Replicas:
    """Replicas A and B, their shared data dir, an admin key and the Redis they share."""

    a: ServerProcess
    b: ServerProcess
    data_dir: Path
    config: Path
    admin: str
    redis: RedisServer


def call(
    server: ServerProcess, method: str, path: str, key: str, body: Any = None
) -> tuple[int, Any]:
    """One request on its own connection: status and JSON body."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"null")
    finally:
        conn.close()


def cli(replicas: Replicas, *args: str) -> str:
    """`lollms-server keys ...` against the replicas' data dir; its stdout."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(replicas.config), "keys", *args],
        env=server_env(replicas.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def new_key(replicas: Replicas, **limits: int) -> tuple[str, str]:
    """A user key made through replica A's admin API: (the key, its id)."""
    status, body = call(
        replicas.a, "POST", "/api/v1/keys", replicas.admin, {"name": "t", "role": "user", **limits}
    )
    assert status == 201, body
    return body["key"], body["id"]


def seconds_until(server: ServerProcess, key: str, wanted: int) -> float:
    """How long until `server` answers ROUTE with `wanted` for `key` (polled; at most 10 s)."""
    start = time.monotonic()
    while (status := call(server, "GET", ROUTE, key)[0]) != wanted:
        assert time.monotonic() - start < 10, f"still {status}, not {wanted}, after 10 s"
        time.sleep(0.02)
    return time.monotonic() - start


@contextmanager
def two_replicas(root: Path, storage_toml: str = "") -> Iterator[Replicas]:
    """Replicas A and B on one data dir and one Redis for their rate limits; their keys and
    audit log in the data dir's SQLite (WAL), or where `storage_toml` says."""
    data_dir = root / "data"
    with redis_server(root / "redis") as redis:
        config = CONFIG.format(storage=redis.limits_uri) + storage_toml
        with (
            lollms_process(root / "a", config, data_dir=data_dir) as a,
            lollms_process(root / "b", config, data_dir=data_dir) as b,
        ):
            replicas = Replicas(a, b, data_dir, root / "a" / "lollms.toml", "", redis)
            replicas.admin = cli(replicas, "create", "--name", "admin", "--role", "admin")
            yield replicas


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Two replicas sharing SQLite (one data dir) and Redis."""
    with two_replicas(tmp_path_factory.mktemp("replicas")) as replicas:
        yield replicas


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Two replicas sharing Redis and their key store: SQLite, then a real PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("replicas")
        return
    with postgres_server() as postgres:
        storage = f'\n[storage]\nurl = "{postgres.url()}"\n'
        with two_replicas(tmp_path_factory.mktemp("pg-replicas"), storage) as replicas:
            yield replicas


def test_rpm_holds_across_replicas(replicas: Replicas) -> None:
    key, _ = new_key(replicas, rpm=6)
    statuses = [call(r, "GET", ROUTE, key) for r in [replicas.a, replicas.b] * 5]
    assert [s for s, _ in statuses] == [200] * 6 + [429] * 4, statuses
    assert statuses[-1][1]["error"]["details"] == {"limit": 6, "per": "key"}, statuses[-1]


def test_rpm_holds_under_parallel_requests_on_both(replicas: Replicas) -> None:
    key, _ = new_key(replicas, rpm=8)
    targets = [replicas.a, replicas.b] * 12
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda r: call(r, "GET", ROUTE, key)[0], targets))
    assert sorted(statuses) == [200] * 8 + [429] * 16, statuses  # no overshoot


def test_token_budget_holds_across_replicas(replicas: Replicas) -> None:
    """16 parallel generations of one key with tpm=100, half on each replica: the reservations
    are counted in Redis, so together they serve at most the budget plus one request."""
    key, _ = new_key(replicas, tpm=100)
    body = {
        "input_data": [
            {"type": "text", "data": "one two three four five six seven eight nine ten"}
        ],
        "binding_name": "echo",
        "model_name": "slow",  # 40 ms a token: the generations overlap
        "parameters": {"max_tokens": 10},
    }

    def one(replica: ServerProcess) -> tuple[int, int]:
        status, answer = call(replica, "POST", "/api/v1/generate", key, body)
        return status, answer["usage"]["total_tokens"] if status == 200 else 0

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, [replicas.a, replicas.b] * 8))
    served = sum(tokens for _, tokens in results)
    one_request = max(tokens for _, tokens in results)  # 10 prompt + 10 answer
    assert one_request == 20, results
    assert served <= 100 + one_request, results  # before: up to 2 x 100 + 2 x 20
    assert {status for status, _ in results} == {200, 429}, results
    assert sum(1 for status, _ in results if status == 200) >= 4, results


def test_key_made_on_a_is_accepted_by_b_within_1s(pair: Replicas) -> None:
    key, _ = new_key(pair)
    assert seconds_until(pair.b, key, 200) < PROPAGATION_S


def test_key_revoked_on_a_is_refused_by_b_within_1s(pair: Replicas) -> None:
    key, key_id = new_key(pair)
    assert call(pair.b, "GET", ROUTE, key)[0] == 200
    status, body = call(pair.a, "DELETE", f"/api/v1/keys/{key_id}", pair.admin)
    assert status == 200 and body["status"] == "revoked", body
    assert seconds_until(pair.b, key, 401) < PROPAGATION_S
    assert call(pair.b, "GET", ROUTE, key)[1]["error"]["message"] == "this API key is revoked"


def test_key_revoked_with_the_cli_is_refused_by_both_within_1s(pair: Replicas) -> None:
    key, key_id = new_key(pair)
    assert call(pair.b, "GET", ROUTE, key)[0] == 200
    assert cli(pair, "revoke", key_id) == f"revoked {key_id}"
    assert seconds_until(pair.a, key, 401) < PROPAGATION_S
    assert seconds_until(pair.b, key, 401) < PROPAGATION_S


def test_redis_down_lets_requests_pass_with_a_warning_then_limits_resume(
    replicas: Replicas,
) -> None:
    key, _ = new_key(replicas, rpm=1)
    assert [call(r, "GET", ROUTE, key)[0] for r in (replicas.a, replicas.b)] == [200, 429]
    replicas.redis.stop()
    try:
        statuses = [call(r, "GET", ROUTE, key)[0] for r in (replicas.a, replicas.b) * 2]
        assert statuses == [200] * 4, statuses
        for replica in (replicas.a, replicas.b):
            assert f"rate limit storage {replicas.redis.limits_uri} failed" in replica.log()
            assert "requests pass without rate limits" in replica.log()
        metrics = call_text(replicas.a, "/metrics", replicas.admin)
        assert "lollms_rate_limit_storage_errors_total 0.0" not in metrics
        assert "lollms_rate_limit_storage_errors_total" in metrics
    finally:
        replicas.redis.start()
    key, _ = new_key(replicas, rpm=1)
    assert [call(r, "GET", ROUTE, key)[0] for r in (replicas.b, replicas.a)] == [200, 429]


def call_text(server: ServerProcess, path: str, key: str) -> str:
    """A GET's body as text."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("uri", ["redis://:s3cret@127.0.0.1:6379", "async+nosuch://:s3cret@h"])
def test_an_unusable_storage_uri_is_a_config_error_without_its_password(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"security\.rate_limit_storage: got") as refused:
        parse_config({"security": {"rate_limit_storage": uri}})
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)


async def test_redis_down_under_refuse_is_a_503_naming_it(
    make_config: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage URI comes from `rate_limit_storage_env`'s variable (a password stays out of
    the config file); a Redis that does not answer is a 503 naming it, password masked."""
    port = free_port()  # nothing listens there
    config = make_config(
        {
            "bindings": {"echo": {"type": "echo"}},
            "security": {
                "local_access": False,
                "ip_rpm": 100,
                "rate_limit_storage_env": "TEST_LIMITS_REDIS",
                "rate_limit_on_storage_error": "refuse",
            },
        }
    )
    with pytest.raises(ConfigError, match="rate_limit_storage_env names TEST_LIMITS_REDIS"):
        create_app(config)
    monkeypatch.setenv("TEST_LIMITS_REDIS", "async+nosuch://:s3cret@host")
    with pytest.raises(ConfigError, match="not a usable") as refused:
        create_app(config)
    assert "s3cret" not in str(refused.value)
    monkeypatch.setenv("TEST_LIMITS_REDIS", f"async+redis://:s3cret@127.0.0.1:{port}")
    client = await make_client(config)
    response = await client.get("/api/v1/health")
    assert response.status == 503, await response.text()
    body = await response.json()
    assert body["error"]["type"] == "rate_limits_unavailable", body
    assert f"redis://***@127.0.0.1:{port}" in body["error"]["message"], body
    assert "s3cret" not in json.dumps(body)
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("policy", ["allow", "refuse"])
def test_a_hung_redis_costs_one_timeout_not_one_per_call(tmp_path: Path, policy: str) -> None:
    """Redis frozen (a partition): after the first call has timed out (1 s), requests skip it
    while one trial at a time waits: `allow` serves at nearly full speed (not 2 s and more per
    request: an address, a key and a token budget each used to wait), `refuse` answers its 503
    at once (HAProxy's retries would multiply each wait by 4); both recover once it answers."""
    with redis_server(tmp_path / "redis") as redis:
        config = CONFIG.format(storage=redis.limits_uri)
        config += f'ip_rpm = 100000\nrate_limit_on_storage_error = "{policy}"\n'
        with lollms_process(tmp_path / "a", config) as server:
            folder = tmp_path / "a"
            replicas = Replicas(server, server, folder / "data", folder / "lollms.toml", "", redis)
            key = cli(replicas, "create", "--name", "k", "--rpm", "100000", "--tpm", "10000000")
            chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
            assert call(server, "POST", "/v1/chat/completions", key, chat)[0] == 200
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            waits: list[tuple[int, float]] = []

            def client(until: float) -> None:
                while time.monotonic() < until:
                    started = time.monotonic()
                    status = call(server, "POST", "/v1/chat/completions", key, chat)[0]
                    waits.append((status, time.monotonic() - started))

            try:
                until = time.monotonic() + 6
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(client, [until] * 8))
            finally:
                redis.process.send_signal(signal.SIGCONT)
            assert {status for status, _ in waits} == {200 if policy == "allow" else 503}, waits
            slow = [wait for _, wait in waits if wait > 0.5]
            assert len(waits) > 100 and len(slow) <= 8 * 3, (len(waits), slow)
            deadline = time.monotonic() + 10
            while call(server, "GET", ROUTE, key)[0] != 200 or (
                "X-RateLimit-Limit" not in limits_headers(server, key)
            ):
                assert time.monotonic() < deadline, "limits did not resume"
                time.sleep(0.1)


def limits_headers(server: ServerProcess, key: str) -> dict[str, str]:
    """The headers of one listing with `key`."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("GET", ROUTE, headers={"Authorization": f"Bearer {key}"})
        reply = conn.getresponse()
        reply.read()
        return dict(reply.headers)
    finally:
        conn.close()
