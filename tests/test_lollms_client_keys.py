"""`lollms-client` with keys: its `service_key` opens the `/lollms/v1` routes, none is a 401,
and a key limited to some models sees only those there too."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lollms_client import LollmsClient
from lollms_client_world import CONFIG

from lollms_server.faces.lollms import client_compat as lollms_client_compat
from lollms_server.faces.lollms import webui_compat as lollms_webui_compat
from lollms_server.httpkit.error_middleware import face_of
from lollms_server.testing.process import (
    SERVER_COMMAND,
    ServerProcess,
    lollms_process,
    server_env,
)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A server where every caller needs a key (no local access), and its folder."""
    folder = tmp_path_factory.mktemp("keyed")
    config = CONFIG + "\n[security]\nlocal_access = false\n"
    with lollms_process(folder, config) as running:
        yield running, folder


def make_key(folder: Path, name: str, *options: str) -> str:
    """A key made with the CLI."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create", "--name",
         name, *options],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def test_service_key_opens_the_lollms_routes(keyed: tuple[ServerProcess, Path]) -> None:
    server, folder = keyed
    key = make_key(folder, "client")
    client = LollmsClient(
        llm_binding_name="lollms",
        llm_binding_config={
            "host_address": server.url, "model_name": "echo/echo", "service_key": key
        },
    )  # fmt: skip
    assert client.generate_text("with a key") == "with a key"
    assert client.tokenize("ab") == [97, 98]
    assert client.llm._get_ctx_size("echo/echo") == 4096
    assert key not in server.log()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/lollms/v1/tokenize"),
        ("GET", "/lollms/v1/llm/models"),
        ("GET", "/lollms/v1/personalities"),
        ("POST", "/lollms_generate"),
        ("POST", "/text2Audio"),
        ("GET", "/list_stt_models"),
    ],
)
def test_no_key_is_a_401(keyed: tuple[ServerProcess, Path], method: str, path: str) -> None:
    server, _ = keyed
    reply = requests.request(method, server.url + path, json={"text": "x"}, timeout=30)
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "unauthorized"  # JSON, never the login page


def test_every_compat_route_answers_errors_in_json() -> None:
    paths = [r.path for r in (*lollms_client_compat.routes, *lollms_webui_compat.routes)]
    assert {face_of(path.replace("{kind}", "llm")) for path in paths} == {"lollms"}


def test_a_key_limited_to_a_model_sees_only_it(keyed: tuple[ServerProcess, Path]) -> None:
    server, folder = keyed
    key = make_key(folder, "limited", "--models", "echo/think")
    headers = {"Authorization": f"Bearer {key}"}
    listed = requests.get(f"{server.url}/lollms/v1/llm/models", headers=headers, timeout=30)
    assert [m["id"] for m in listed.json()["data"]] == ["echo/think"]
    names = requests.get(f"{server.url}/list_models", headers=headers, timeout=30).json()
    assert names == ["echo/think"]
    refused = requests.post(
        f"{server.url}/lollms/v1/tokenize",
        json={"model": "echo/echo", "text": "x"},
        headers=headers,
        timeout=30,
    )
    assert refused.status_code in (403, 404)
