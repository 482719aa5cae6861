"""`lollms-server serve --workers 2` as a real process: requests land on both workers, a worker
that dies is replaced, SIGTERM drains every worker (a stream in flight ends whole) and exits 0,
workers do not outlive a supervisor killed with -9, and what N > 1 cannot do is refused."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from lollms_server.bindings import Binding
from lollms_server.config import parse_config
from lollms_server.errors import ConfigError
from lollms_server.plugins import load_plugins
from lollms_server.testing.process import (
    SERVER_COMMAND,
    ServerProcess,
    lollms_process,
    server_env,
)
from lollms_server.testing.server import KitPlugin
from lollms_server.workers import WORKER_HEADER, check_workers

CONFIG = """
[bindings.echo]
type = "echo"
delay_ms = 150
"""
WORDS = [f"w{i}" for i in range(16)]  # echo/slow: 16 tokens x 150 ms, about 2.4 s


def get(server: ServerProcess, path: str) -> tuple[int, dict[str, str], Any]:
    """One GET on its own connection (a new connection may land on any worker)."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, dict(reply.headers), json.loads(reply.read() or b"null")
    finally:
        conn.close()


def ready_status(server: ServerProcess) -> int:
    """/api/v1/ready's status on a new connection, or 0 when the connection fails: a worker with
    nothing in flight ends its drain at once, and a connection the kernel queued on its closing
    listener is reset (SO_REUSEPORT), which a load balancer reads as not ready too."""
    try:
        return get(server, "/api/v1/ready")[0]
    except ConnectionError:  # http.client.RemoteDisconnected is one
        return 0


def workers_seen(server: ServerProcess, tries: int = 40) -> set[str]:
    """The worker indexes that answered `tries` new connections."""
    return {get(server, "/api/v1/health")[1].get(WORKER_HEADER, "?") for _ in range(tries)}


def both_up(server: ServerProcess) -> ServerProcess:
    """`server` once both workers answer (the second may still be starting)."""
    deadline = time.monotonic() + 60
    while workers_seen(server, tries=10) != {"0", "1"}:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)
    return server


def worker_pids(server: ServerProcess) -> list[int]:
    """The supervisor's children."""
    return sorted(child.pid for child in psutil.Process(server.process.pid).children())


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`serve --workers 2` with the embedded defaults (SQLite, memory rate limits)."""
    folder = tmp_path_factory.mktemp("workers")
    with lollms_process(folder, CONFIG, "serve", "--workers", "2") as server:
        yield both_up(server)


def test_requests_land_on_both_workers(workers: ServerProcess) -> None:
    assert workers_seen(workers) == {"0", "1"}
    pids = worker_pids(workers)
    assert len(pids) == 2 and workers.process.pid not in pids, pids


def test_memory_rate_limits_are_named_at_start(workers: ServerProcess) -> None:
    log = workers.log()
    assert "each worker counts its own rate limits" in log, log[-3000:]
    assert "async+redis://host:6379" in log


def test_a_dead_worker_is_replaced(workers: ServerProcess) -> None:
    before = worker_pids(workers)
    psutil.Process(before[0]).kill()
    deadline = time.monotonic() + 60
    while len(after := worker_pids(workers)) < 2 or before[0] in after:
        assert time.monotonic() < deadline, f"no new worker: {after}\n{workers.log()[-3000:]}"
        time.sleep(0.2)
    both_up(workers)
    assert "exited with -9" in workers.log()


def test_sigterm_drains_every_worker_then_exits_0(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    url = urlsplit(workers.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    body = {
        "input_data": [{"type": "text", "data": " ".join(WORDS)}],
        "binding_name": "echo",
        "model_name": "slow",
        "stream": True,
    }
    conn.request("POST", "/api/v1/generate", json.dumps(body), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200
    lines = iter(reply)
    next(line for line in lines if b'"chunk"' in line)  # a token arrived: in flight
    workers.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while ready_status(workers) == 200:  # each worker turns unready at once
        assert time.monotonic() < deadline, "ready still 200 after SIGTERM"
        time.sleep(0.05)
    events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    conn.close()
    assert events[-1]["type"] == "final" and "error" not in [e["type"] for e in events]
    assert workers.process.wait(timeout=60) == 0, workers.log()[-3000:]
    assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in pids), pids


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_follow_a_supervisor_killed_with_9(tmp_path: Path) -> None:
    with lollms_process(tmp_path, CONFIG, "serve", "--workers", "2") as server:
        pids = worker_pids(both_up(server))
        server.process.kill()
        server.process.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.2)
    assert "the supervisor" in server.log() and "is gone: draining" in server.log()


def test_a_fixed_port_is_required(tmp_path: Path) -> None:
    config = tmp_path / "lollms.toml"
    config.write_text(CONFIG, encoding="utf-8")
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(config), "serve", "--workers", "2", "--port", "0"],
        env=server_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--workers needs a fixed port" in done.stderr


class LocalModels(Binding):
    """A binding that holds its models in the server process (the default)."""

    name = "localish"
    capabilities = frozenset({"ttt"})


def test_local_model_instances_need_one_worker() -> None:
    plugins = load_plugins({"local": KitPlugin(LocalModels)})
    raw = {
        "server": {"port": 9999},
        "bindings": {"mine": {"type": "localish"}, "echo": {"type": "echo"}},
    }
    config = parse_config(raw)
    with pytest.raises(ConfigError, match=r"binding instance\(s\) mine hold models"):
        check_workers(config, plugins, 2)
    check_workers(config, plugins, 1)  # one worker: allowed
    raw["bindings"]["mine"]["enabled"] = False
    check_workers(parse_config(raw), plugins, 2)  # disabled: allowed
