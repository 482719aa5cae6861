"""A real `lollms-server` process for tests: a config file, a free port, its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fixtures import free_port, wait_for_http

SERVER_COMMAND = (sys.executable, "-m", "lollms_server.cli")


def request_lines(log: str) -> list[str]:
    """`METHOD /path STATUS` of each request log line (JSON, one per request) in `log`."""
    lines = []
    for line in log.splitlines():
        if '"lollms_server.requests"' not in line:
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        lines.append(f"{fields.get('method')} {fields.get('path')} {fields.get('status')}")
    return lines


def request_count(log: str, method: str, path: str, status: int | None = None) -> int:
    """How many request log lines in `log` are `method path` (with `status`, when given)."""
    return sum(
        1
        for line in request_lines(log)
        if line.rsplit(" ", 1)[0] == f"{method} {path}"
        and (status is None or line.endswith(f" {status}"))
    )


@dataclass
class ServerProcess:
    """A running server: where it answers, the process, and its output file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")


def toml_table(name: str, values: Mapping[str, Any]) -> str:
    """One TOML table of strings, numbers, booleans and lists of them (JSON spells them)."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        literal = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def server_env(data_dir: Path) -> dict[str, str]:
    """This environment without LOLLMS_* variables, with the data dir set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env["LOLLMS_DATA_DIR"] = str(data_dir)
    return env


@contextmanager
def lollms_process(
    folder: Path,
    config_toml: str,
    *args: str,
    timeout_s: float = 60.0,
    server_settings: Mapping[str, Any] | None = None,
    data_dir: Path | None = None,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """Run `lollms-server --config <folder>/lollms.toml` on a free loopback port until the
    block ends; `config_toml` is the file without its `[server]` table (`server_settings` adds
    to that table). `data_dir` (default <folder>/data) may be shared by several replicas."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = toml_table("server", {"host": "127.0.0.1", "port": port, **(server_settings or {})})
    config = folder / "lollms.toml"
    config.write_text(server + "\n" + config_toml, encoding="utf-8")
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*SERVER_COMMAND, "--config", str(config), *args],
            env=server_env(data_dir or folder / "data"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        if not wait_for_http(f"{running.url}/api/v1/health", timeout_s=timeout_s):
            raise AssertionError(f"the server did not come up:\n{running.log()[-4000:]}")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
