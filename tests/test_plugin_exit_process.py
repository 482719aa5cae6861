"""A binding that raises SystemExit (a library calling sys.exit) is a 502 naming it; the
server process keeps serving."""

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
