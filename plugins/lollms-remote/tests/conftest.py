"""Real node servers for the lollms-remote tests: lollms-server processes on loopback.

- two echo nodes (every generation type; the `slow` model streams a token every 50 ms);
- one llama.cpp node serving the tiny random GGUF through lollms-llamacpp.

Each node has an admin key made with its CLI, so the binding's key is checked for
real (a lollms-format key is always verified, even from loopback).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.testing import ServerProcess, backend_unavailable, lollms_process
from lollms_server.testing.process import SERVER_COMMAND, server_env

ECHO_NODE = """\
[bindings.echo]
type = "echo"
delay_ms = {delay_ms}

[resources]
ram_budget = "{budget}"
"""

LLAMA_NODE = """\
[bindings.llamacpp]
type = "llamacpp"
models_folders = ["{folder}"]
n_ctx = 512
n_parallel = 1
n_threads = 1
"""


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


def make_key(folder: Path, name: str) -> str:
    """An admin key of the node in `folder`, made with its CLI (`keys create`)."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", name, "--role", "admin"],
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


@pytest.fixture(scope="session")
def llama_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A node serving the tiny random GGUF through llama.cpp."""
    models = tmp_path_factory.mktemp("gguf")
    write_tiny_gguf(models / "tiny.gguf", seed=0)
    with ExitStack() as stack:
        try:
            node = start_node(
                stack, tmp_path_factory.mktemp("llama-node"), LLAMA_NODE.format(folder=models), "gw"
            )
        except AssertionError as exc:
            backend_unavailable(request, str(exc))
        yield node


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
