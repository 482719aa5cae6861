"""The `lollms-server` command as a user runs it: a real process on a free port."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "lollms_server.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    clean["LOLLMS_DATA_DIR"] = str(tmp_path / "data")
    return clean


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_on_embedded_defaults_answers_health(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env["LOLLMS_PORT"] = str(port)
    process = subprocess.Popen(COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as reply:
                    body = json.load(reply)
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "server did not answer in 30 s"
                time.sleep(0.05)
        assert body["status"] == "ok"
        assert (tmp_path / "data" / "lollms.toml").is_file()
        assert (tmp_path / "data" / "lollms.sqlite").is_file()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_config_init_and_show(env: dict[str, str], tmp_path: Path) -> None:
    first = run(env, "config", "init")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "data" / "lollms.toml").is_file()
    again = run(env, "config", "init")
    assert again.returncode == 1 and "--force" in again.stderr
    shown = run(env, "config", "show")
    summary = json.loads(shown.stdout)
    assert summary["server"]["port"] == 9601
    assert summary["bindings"]["echo"]["type"] == "echo"


def test_config_show_masks_secrets(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[bindings.remote]\ntype = "echo"\napi_key = "sk-very-secret"\n')
    shown = run(env, "--config", str(path), "config", "show")
    assert "sk-very-secret" not in shown.stdout
    assert json.loads(shown.stdout)["bindings"]["remote"]["api_key"] == "***"


def test_invalid_config_stops_start_up_naming_the_key(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "nine"\n')
    result = run(env, "--config", str(path), "serve")
    assert result.returncode == 2
    assert "server.port: got 'nine'; Not a valid integer." in result.stderr


def test_plugins_lists_echo(env: dict[str, str]) -> None:
    result = run(env, "plugins")
    assert result.returncode == 0, result.stdout
    assert "echo" in result.stdout and "lollms-server" in result.stdout
