"""Security checks against real server processes: a non-loopback client, and audit durability."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.testing import free_port

SERVER = [sys.executable, "-m", "lollms_server.cli"]


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env.update(LOLLMS_DATA_DIR=str(data_dir), LOLLMS_PORT=str(port))
    return env


def create_key(env: dict[str, str], role: str = "user") -> str:
    done = subprocess.run(
        [*SERVER, "keys", "create", "--name", f"test-{role}", "--role", role],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def request(url: str, headers: dict[str, str] | None = None, body: object = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_up(url: str, process: subprocess.Popen[bytes], prefix: list[str] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        probe = [*(prefix or []), sys.executable, "-c",
                 f"import urllib.request; urllib.request.urlopen({url!r}, timeout=1)"]  # fmt: skip
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 30 s")


def test_audit_events_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "data", port)
    key = create_key(env)
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        SERVER, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_up(f"{base}/api/v1/health", process)
        foreign = {"Host": "evil.example"}
        assert request(f"{base}/api/v1/list_models", foreign) == 401
        wrong = key[:-1] + ("B" if key.endswith("A") else "A")  # one character off, never equal
        assert request(f"{base}/api/v1/list_models", {**foreign, "X-API-Key": wrong}) == 401
        body = {"input_data": [{"type": "text", "data": "durable"}]}
        headers = {**foreign, "X-API-Key": key, "Content-Type": "application/json"}
        assert request(f"{base}/api/v1/generate", headers, body) == 200
    finally:
        process.send_signal(signal.SIGKILL)  # right after the last response
        process.wait(timeout=10)
    restarted = subprocess.Popen(
        SERVER, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_up(f"{base}/api/v1/health", restarted)
        with urllib.request.urlopen(f"{base}/api/v1/audit?limit=100", timeout=10) as reply:
            events = json.load(reply)["events"]
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    kinds = [e["event"] for e in events]
    assert kinds.count("auth_failed") == 2
    assert "generation" in kinds and "key_created" in kinds


def _netns_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    probe = f"lollms-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: server 10.231.7.1, client 10.231.7.2."""
    problem = _netns_ready()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"non-loopback test cannot run in CI: {problem}")
        pytest.skip(f"non-loopback test cannot run here: {problem}")
    tag = uuid.uuid4().hex[:6]
    server, client = f"lollms-s-{tag}", f"lollms-c-{tag}"
    commands = [
        ["ip", "netns", "add", server],
        ["ip", "netns", "add", client],
        ["ip", "link", "add", f"vs{tag}", "netns", server, "type", "veth",
         "peer", "name", f"vc{tag}", "netns", client],
        ["ip", "-n", server, "addr", "add", "10.231.7.1/30", "dev", f"vs{tag}"],
        ["ip", "-n", client, "addr", "add", "10.231.7.2/30", "dev", f"vc{tag}"],
        ["ip", "-n", server, "link", "set", f"vs{tag}", "up"],
        ["ip", "-n", client, "link", "set", f"vc{tag}", "up"],
        ["ip", "-n", server, "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        yield server, client
    finally:
        for name in (server, client):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


CLIENT_SCRIPT = """
import json, sys, urllib.request, urllib.error
url, key = sys.argv[1], sys.argv[2]
results = {}
cases = {
    "no key, loopback Host": {"Host": "127.0.0.1:PORT"},
    "no key, forged X-Forwarded-For": {"Host": "127.0.0.1:PORT", "X-Forwarded-For": "127.0.0.1"},
    "with key": {"Host": "127.0.0.1:PORT", "X-API-Key": key},
}
port = url.rsplit(":", 1)[1].split("/")[0]
for name, headers in cases.items():
    headers = {k: v.replace("PORT", port) for k, v in headers.items()}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            results[name] = r.status
    except urllib.error.HTTPError as exc:
        results[name] = exc.code
print(json.dumps(results))
"""


def test_non_loopback_client_gets_no_local_bypass(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    server_ns, client_ns = namespaces
    port = free_port()
    env = server_env(tmp_path / "data", port)
    env["LOLLMS_HOST"] = "0.0.0.0"
    key = create_key(env)
    process = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *SERVER], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_up(
            f"http://127.0.0.1:{port}/api/v1/health", process, ["ip", "netns", "exec", server_ns]
        )
        url = f"http://10.231.7.1:{port}/api/v1/list_models"
        done = subprocess.run(
            ["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT_SCRIPT, url, key],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        results = json.loads(done.stdout)
        local = subprocess.run(
            ["ip", "netns", "exec", server_ns, sys.executable, "-c",
             "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).status)",
             f"http://127.0.0.1:{port}/api/v1/list_models"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert results == {
        "no key, loopback Host": 401,
        "no key, forged X-Forwarded-For": 401,
        "with key": 200,
    }
    assert local.stdout.strip() == "200"  # the same server still lets its own machine in
