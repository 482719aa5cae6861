"""Bindings that misbehave in ways only a real process shows: SystemExit (a library calling
sys.exit) is a 502 naming it and the server keeps serving; a startup() that never returns
does not keep the server from listening."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lollms_server.testing import lollms_process

PLUGIN = """
from lollms_server.sdk import Binding, Chunk, ModelInfo, hookimpl

class Quitter(Binding):
    name = "quitter"
    capabilities = frozenset({"ttt", "stream"})

    async def list_models(self):
        return [ModelInfo("bye")]

    async def stream(self, request):
        raise SystemExit(3)
        yield Chunk(content="never")

@hookimpl
def register_bindings():
    return [Quitter]
"""


HANGING_STARTUP = """
import asyncio
from lollms_server.sdk import Binding, ModelInfo, hookimpl

class Sleeper(Binding):
    name = "sleeper"
    capabilities = frozenset({"ttt"})

    async def startup(self):
        await asyncio.sleep(3600)

    async def list_models(self):
        return [ModelInfo("zz")]

@hookimpl
def register_bindings():
    return [Sleeper]
"""


def install(site: Path, module: str, source: str) -> None:
    """A module plus the dist-info of an installed plugin distribution whose entry point it is."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[lollms_server]\n{module} = {module}\n")


def post(url: str, body: dict[str, object]) -> tuple[int, str]:
    """POST JSON; the status and body, errors included."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_system_exit_in_a_binding_is_a_502_and_the_server_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "fakeplug_quitter.py").write_text(PLUGIN)
    info = site / "lollms_quitter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lollms-quitter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lollms_server]\nquitter = fakeplug_quitter\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    config = '[bindings.q]\ntype = "quitter"\n\n[defaults]\nttt = "q"\n'
    with lollms_process(tmp_path / "server", config) as server:
        chat = {"model": "q/bye", "messages": [{"role": "user", "content": "hi"}]}
        for stream in (False, True):
            status, text = post(f"{server.url}/v1/chat/completions", {**chat, "stream": stream})
            assert status == 502, text
            assert "'q'" in text and "SystemExit" in text, text
        assert server.process.poll() is None, server.log()[-3000:]
        with urllib.request.urlopen(f"{server.url}/api/v1/health", timeout=10) as health:
            assert health.status == 200


def test_a_hanging_startup_does_not_keep_the_server_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "site", "fakeplug_sleeper", HANGING_STARTUP)
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    config = '[bindings.s]\ntype = "sleeper"\n\n[bindings.echo]\ntype = "echo"\n'
    config += '\n[defaults]\nttt = "echo"\n'
    settings = {"request_timeout_s": 2}
    with lollms_process(
        tmp_path / "server", config, server_settings=settings, timeout_s=30
    ) as server:
        status, text = post(
            f"{server.url}/api/v1/generate", {"input_data": [{"type": "text", "data": "hi"}]}
        )
        assert status == 200, text
        assert "binding s did not start within 2" in server.log()
