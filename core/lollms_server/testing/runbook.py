"""Rehearsing the runbook (`docs/operations.md`): its shell blocks by rehearsal name, run as
written against a real server process started the runbook's way.

A block is tagged after its fence: ```` ```bash rehearsed=<name> ````. The commands run with bash
(`-euo pipefail`), as written, in an environment that sets the runbook's variables
(`LOLLMS_CONFIG`, `LOLLMS_URL`, ...) to the test's own server; nothing in them is rewritten.
Used by tests/test_runbook.py and by plugins whose procedures the runbook shows (lollms-remote).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .fixtures import free_port, wait_for_http
from .process import toml_table

RUNBOOK = Path(__file__).resolve().parents[3] / "docs" / "operations.md"  # in a source checkout
ECHO = '[bindings.echo]\ntype = "echo"\ndelay_ms = 30\n'
KEY = re.compile(r"\blollms_[A-Za-z0-9_-]+")
FENCE = re.compile(r"^ *```(\w*)([^\n]*)\n(.*?)^ *```\s*$", re.MULTILINE | re.DOTALL)
TAG = re.compile(r"\brehearsed=([\w-]+)")


@dataclass(frozen=True)
class Block:
    """One fenced block of the runbook."""

    language: str
    name: str | None
    script: str
    line: int


def runbook_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the runbook, in order, with its rehearsal name if tagged."""
    text = RUNBOOK.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in FENCE.finditer(text):
        tag = TAG.search(match.group(2))
        indent = len(match.group(0)) - len(match.group(0).lstrip(" "))
        script = "\n".join(line[indent:] for line in match.group(3).splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), tag.group(1) if tag else None, script, line))
    return found


def scripts() -> dict[str, str]:
    """Each rehearsal name's commands."""
    return {block.name: block.script for block in runbook_blocks() if block.name}


def operator_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without LOLLMS_*, the venv's scripts first on PATH, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(values)
    return env


def run_block(name: str, values: Mapping[str, str], timeout_s: float = 120) -> str:
    """Run the block `name` with the runbook's variables set to `values`; its output."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", scripts()[name]],
        env=operator_env(values),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def start_block(name: str, values: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start the block `name` (a command that keeps running, e.g. the server) in the background."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", "exec " + scripts()[name].strip()],
            env=operator_env(values),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def key_id(key: str) -> str:
    """The id of a key: the 12 characters after `lollms_`."""
    return key.split("_")[1]


class RunbookServer:
    """A server run the runbook's way: its config, data dir and address in the variables."""

    def __init__(self, folder: Path, storage_url: str | None = None, backends: str = ECHO) -> None:
        self.folder = folder
        self.backends = backends
        self.port = free_port()
        self.config = folder / "lollms.toml"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.use_storage(storage_url)
        self.values = {
            "LOLLMS_CONFIG": str(self.config),
            "LOLLMS_DATA_DIR": str(folder / "data"),
            "LOLLMS_URL": f"http://127.0.0.1:{self.port}",
            "BACKUP": str(folder.parent / "backups" / "lollms.sqlite"),
            "MODEL": "echo/echo",
        }

    def use_storage(self, url: str | None) -> None:
        """(Re)write the config: keys and audit in the data dir's SQLite, or at `url`."""
        server = {"host": "127.0.0.1", "port": self.port, "drain_timeout_s": 30}
        storage = toml_table("storage", {"url": url}) if url else ""
        security = toml_table("security", {"local_access": False})
        self.config.write_text(toml_table("server", server) + security + storage + self.backends)

    def run(self, name: str, **values: str) -> str:
        """Run the runbook block `name` against this server."""
        return run_block(name, {**self.values, **values})

    def create_key(self, name: str, role: str = "user") -> str:
        """A new key made by the runbook's own `keys create` block (plus a role)."""
        values = {**self.values, "KEY_NAME": name}
        script = scripts()["rotate-create"] + (f" --role {role}" if role != "user" else "")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=operator_env(values),
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = KEY.search(done.stdout)
        assert done.returncode == 0 and found, done.stdout + done.stderr
        return found.group(0)

    def start(self) -> None:
        """The runbook's start command, then its check."""
        self.process = start_block("start", self.values, self.folder / "server.log")
        self.values["LOLLMS_PID"] = str(self.process.pid)
        if not wait_for_http(f"{self.values['LOLLMS_URL']}/api/v1/health", timeout_s=60):
            raise AssertionError(self.log())
        ready = self.run("check-started")
        assert '"ready": true' in ready, ready

    def drain(self) -> int:
        """The runbook's drain command; the server's exit status."""
        assert self.process is not None
        process = self.process
        waiter = threading.Thread(target=process.wait, daemon=True)
        waiter.start()  # reaps the server, so the block's `kill -0` loop sees it gone
        self.run("drain")
        waiter.join(60)
        self.process = None
        return int(process.returncode)

    def kill(self) -> None:
        """Kill the server if it still runs (the end of the module)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)

    def status(self, key: str) -> int:
        """The runbook's key check, as a status."""
        return int(self.run("check-key", KEY=key).strip())

    def chat(self, key: str, model: str = "echo/echo") -> str:
        """One whole chat with `key`; its request id."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert reply.status == 200, reply.status
        return str(reply.getheader("X-Request-Id"))

    def log(self) -> str:
        """The server's log so far."""
        return (self.folder / "server.log").read_text(errors="replace")[-4000:]
