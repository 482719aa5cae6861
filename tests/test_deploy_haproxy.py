"""The shipped HAProxy config (`deploy/haproxy/haproxy.cfg`, addresses from the environment as in
production, the file itself unchanged) as a real process in front of two real lollms-server
replicas that share one SQLite data dir (the same keys on both; a key revoked once is refused by
both at once): a rolling restart (SIGTERM one replica, it drains and exits 0, start it again,
wait until HAProxy has it UP, then the other) while clients send whole and streamed requests
through HAProxy fails no request."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lollms_server.testing import free_port
from lollms_server.testing.process import SERVER_COMMAND, server_env, toml_table
from lollms_server.testing.replica import Replica

HAPROXY_CFG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy" / "haproxy.cfg"
ECHO = '[bindings.echo]\ntype = "echo"\ndelay_ms = 40\n'
WORDS = [f"w{i}" for i in range(15)]  # echo/slow: 15 tokens x 40 ms per stream
PROMPT = " ".join(WORDS)


def haproxy_binary() -> str:
    """Debian's haproxy; where CI is set, missing is a failure, not a skip."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (apt-get install haproxy)")
        pytest.skip("haproxy is not installed")
    return found


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def replica_config(replica: Replica) -> Path:
    """Write the replica's config (echo, its own port, a 30 s drain) and return its path."""
    config = replica.folder / "lollms.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    server = {"host": "127.0.0.1", "port": replica.port, "drain_timeout_s": 30}
    config.write_text(toml_table("server", server) + "\n" + ECHO, encoding="utf-8")
    return config


class Traffic:
    """Client threads sending requests through the load balancer until stopped."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.failures: list[str] = []
        self.done: Counter[str] = Counter()
        self.stopping = threading.Event()
        kinds = {"openai_whole": self.openai_whole, "lollms_sse": self.lollms_sse}
        kinds["ollama_ndjson"] = self.ollama_ndjson
        self.threads = [
            threading.Thread(target=self.loop, args=(name, send), daemon=True)
            for name, send in [*kinds.items(), ("lollms_sse_2", self.lollms_sse)]
        ]

    def loop(self, name: str, send: Callable[[http.client.HTTPConnection], None]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stopping.is_set():
            try:
                send(conn)
                self.done[name] += 1
            except (
                OSError,
                http.client.HTTPException,
                AssertionError,
                ValueError,
                LookupError,
            ) as exc:
                self.failures.append(f"{name}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.close()

    def post(self, conn: http.client.HTTPConnection, path: str, body: object) -> bytes:
        headers = {"Content-Type": "application/json", "X-API-Key": self.key}
        conn.request("POST", path, json.dumps(body), headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise AssertionError(f"{path}: {reply.status} {data[:300]!r}")
        return data

    def openai_whole(self, conn: http.client.HTTPConnection) -> None:
        body = {"model": "echo/echo", "messages": [{"role": "user", "content": PROMPT}]}
        answer = json.loads(self.post(conn, "/v1/chat/completions", body))
        text = answer["choices"][0]["message"]["content"]
        assert text.split() == WORDS, text

    def lollms_sse(self, conn: http.client.HTTPConnection) -> None:
        body = {
            "input_data": [{"type": "text", "data": PROMPT}],
            "binding_name": "echo",
            "model_name": "slow",
            "stream": True,
        }
        data = self.post(conn, "/api/v1/generate", body).decode()
        events = [json.loads(line[6:]) for line in data.splitlines() if line.startswith("data: ")]
        kinds = [e["type"] for e in events]
        assert "error" not in kinds and kinds[-1] == "final", kinds
        text = "".join(e.get("content") or "" for e in events if e["type"] == "chunk")
        assert text.split() == WORDS, text

    def ollama_ndjson(self, conn: http.client.HTTPConnection) -> None:
        messages = [{"role": "user", "content": PROMPT}]
        body = {"model": "echo/slow", "messages": messages, "stream": True}
        lines = [json.loads(line) for line in self.post(conn, "/api/chat", body).splitlines()]
        assert lines[-1].get("done") is True and "error" not in lines[-1], lines[-1]
        text = "".join(line["message"]["content"] for line in lines if "message" in line)
        assert text.split() == WORDS, text

    def total(self) -> int:
        """Requests answered in full so far."""
        return sum(self.done.values())

    def wait_for(self, more: int) -> None:
        """Return once `more` further requests have been answered."""
        target = self.total() + more
        wait_until(lambda: self.total() >= target or bool(self.failures), f"{more} requests")


def stats_rows(stats_port: int, proxy: str = "lollms_replicas") -> list[dict[str, str]]:
    """The rows of HAProxy's CSV stats for one proxy (the replicas' backend by default)."""
    conn = http.client.HTTPConnection("127.0.0.1", stats_port, timeout=5)
    try:
        conn.request("GET", "/;csv")
        text = conn.getresponse().read().decode().lstrip("# ")
    finally:
        conn.close()
    return [row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == proxy]


def server_states(stats_port: int) -> dict[str, str]:
    """Each replica's state (UP, DOWN...) as HAProxy sees it; empty while it does not answer."""
    try:
        rows = stats_rows(stats_port)
    except OSError:
        return {}
    return {
        row["svname"]: row["status"] for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")
    }


def retries(stats_port: int) -> int:
    """Requests HAProxy resent to another replica (refused by a draining one, or unanswered)."""
    (backend,) = [row for row in stats_rows(stats_port) if row["svname"] == "BACKEND"]
    return int(backend["wretr"] or 0) + int(backend["wredis"] or 0)


def revoke_everywhere(tmp_path: Path, key: str, replicas: list[Replica]) -> None:
    """Revoke `key` with the CLI on the shared database: both replicas refuse it at once."""
    key_id = key.split("_")[1]
    revoke = [*SERVER_COMMAND, "--config", str(tmp_path / "cli.toml"), "keys", "revoke", key_id]
    env = server_env(replicas[0].data_dir)
    subprocess.run(revoke, env=env, capture_output=True, timeout=60, check=True)
    for replica in replicas:
        conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
        conn.request("GET", "/v1/models", headers={"X-API-Key": key, "Host": "api.example"})
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert reply.status == 401, (replica.name, reply.status)


@pytest.fixture
def haproxy_ports() -> dict[str, int]:
    """Free loopback ports for the HAProxy front and its stats."""
    return {"front": free_port(), "stats": free_port()}


def test_shipped_haproxy_config_is_valid() -> None:
    done = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    """Two replicas sharing `tmp_path/data`, started; killed at the end if still running."""
    shared = tmp_path / "data"
    made = [Replica(f"replica{n}", tmp_path / f"replica{n}", shared) for n in (1, 2)]
    try:
        yield made
    finally:
        for replica in made:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait(10)


def start_haproxy(
    binary: str,
    tmp_path: Path,
    replicas: list[Replica],
    ports: dict[str, int],
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start both replicas, then HAProxy with the shipped config in front of them."""
    for replica in replicas:
        replica.start(replica_config(replica))
    env = {
        **os.environ,
        "LOLLMS_LB_BIND": f"127.0.0.1:{ports['front']}",
        "LOLLMS_LB_STATS": f"127.0.0.1:{ports['stats']}",
        "LOLLMS_REPLICA1": f"127.0.0.1:{replicas[0].port}",
        "LOLLMS_REPLICA2": f"127.0.0.1:{replicas[1].port}",
        **(extra_env or {}),
    }
    with (tmp_path / "haproxy.log").open("wb") as log:
        return subprocess.Popen(
            [binary, "-f", str(HAPROXY_CFG), "-db"], env=env, stdout=log, stderr=log
        )


def test_rolling_restart_behind_haproxy_fails_no_request(
    tmp_path: Path, replicas: list[Replica], haproxy_ports: dict[str, int]
) -> None:
    binary = haproxy_binary()
    first = replicas[0]
    key = subprocess.run(
        [*SERVER_COMMAND, "--config", str(tmp_path / "cli.toml"), "keys", "create", "--name", "lb"],
        env=server_env(first.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    haproxy = start_haproxy(binary, tmp_path, replicas, haproxy_ports)
    traffic = Traffic(haproxy_ports["front"], key)
    try:
        for replica in replicas:
            wait_until(replica.ready, f"{replica.name} ready")
        up = {"replica1": "UP", "replica2": "UP"}
        wait_until(lambda: server_states(haproxy_ports["stats"]) == up, "both replicas UP")
        for thread in traffic.threads:
            thread.start()
        traffic.wait_for(8)
        for replica in replicas:
            assert replica.stop() == 0, replica.log()
            replica.start(replica_config(replica))
            wait_until(replica.ready, f"{replica.name} ready again")
            wait_until(lambda: server_states(haproxy_ports["stats"]) == up, "both UP again")
            traffic.wait_for(8)
        retried = retries(haproxy_ports["stats"])
    finally:
        traffic.stopping.set()
        for thread in traffic.threads:
            if thread.is_alive():
                thread.join(60)
        haproxy.terminate()
        haproxy.wait(10)
    assert traffic.failures == [], traffic.failures[:10]
    revoke_everywhere(tmp_path, key, replicas)
    assert all(traffic.done[name] > 0 for name in ("openai_whole", "lollms_sse", "ollama_ndjson"))
    print(f"answered through the rolling restart: {dict(traffic.done)}, {retried} retried")


def health_through(port: int) -> int:
    """The status of GET /api/v1/health through HAProxy (0 when the connection fails)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/v1/health")
        reply = conn.getresponse()
        reply.read()
        conn.close()
        return reply.status
    except (OSError, http.client.HTTPException):
        return 0


def open_connections(stats_port: int) -> int:
    """The connections the `lollms` frontend holds now."""
    (front,) = [r for r in stats_rows(stats_port, "lollms") if r["svname"] == "FRONTEND"]
    return int(front["scur"] or 0)


def refused(port: int) -> bool:
    """True when HAProxy closes a new connection without answering its request."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: lb\r\n\r\n")
            return sock.recv(1024) == b""
    except ConnectionError:  # reset: at once, or at the first send
        return True


def test_one_client_address_cannot_hold_every_connection(
    tmp_path: Path, replicas: list[Replica], haproxy_ports: dict[str, int]
) -> None:
    """Slowloris: connections that trickle half a request line hold their places; past
    LOLLMS_LB_CONN_PER_CLIENT of them from one address HAProxy refuses more, and once they
    close, requests pass again."""
    extra = {"LOLLMS_LB_CONN_PER_CLIENT": "5"}
    haproxy = start_haproxy(haproxy_binary(), tmp_path, replicas, haproxy_ports, extra)
    front = haproxy_ports["front"]
    held: list[socket.socket] = []
    try:
        wait_until(lambda: health_through(front) == 200, "health through HAProxy")
        stats = haproxy_ports["stats"]
        # the health check's connection counts for this address until HAProxy has seen it
        # close: opened before, the fifth slow one would be the sixth and be refused
        wait_until(lambda: open_connections(stats) == 0, "the health check's connection gone")
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", front), timeout=5)
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\n")  # and nothing more
            held.append(sock)
        wait_until(lambda: open_connections(stats) == 5, "HAProxy holding the 5 slow ones")
        assert refused(front)
        for sock in held:
            sock.close()
        held.clear()
        wait_until(lambda: health_through(front) == 200, "health once the slow ones left")
    finally:
        for sock in held:
            sock.close()
        haproxy.terminate()
        haproxy.wait(10)
