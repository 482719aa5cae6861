"""The server starts fast with the plugin installed: no engine is imported before a load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "piper",
    "faster_whisper",
    "onnxruntime",
    "ctranslate2",
    "av",
    "numpy",
    "tokenizers",
    "huggingface_hub",
    "transformers",
    "torch",
)
SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from aiohttp.test_utils import TestClient, TestServer
from lollms_server.app import create_app
from lollms_server.config import Config, InstanceConfig, prepare_data_dir
from lollms_server.plugins import load_plugins
import lollms_audio, lollms_audio.plugin

HEAVY = {heavy!r}
loaded = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
instance = InstanceConfig(name="audio", type="audio")
config = Config(
    data_dir=Path(sys.argv[1]), bindings={{"audio": instance}}, defaults={{"tts": "audio"}}
)
prepare_data_dir(config)
plugins = load_plugins()
assert "audio" in plugins.binding_classes, plugins.errors
report = {{}}

async def main():
    async with TestClient(TestServer(create_app(config, plugins))) as client:
        for path in ("/api/v1/list_active_bindings", "/api/v1/list_available_models/audio"):
            response = await client.get(path)
            assert response.status == 200, await response.text()
        report["served"] = loaded()
        if "--speak" in sys.argv:
            body = {{"input": "hi", "voice": "alloy"}}
            response = await client.post("/v1/audio/speech", json=body)
            assert response.status == 200, await response.text()
            report["after_speech"] = loaded()

asyncio.run(main())
print(json.dumps(report))
"""


def run_app(tmp_path: Path, *extra: str) -> dict[str, list[str]]:
    """Run the app in a fresh interpreter; the heavy modules it had imported, by stage."""
    code = SCRIPT.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data"), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_no_engine_is_imported_by_the_server(tmp_path: Path) -> None:
    """Registering, listing models and health import none of the engines."""
    assert run_app(tmp_path)["served"] == []


def test_the_check_sees_engines_once_they_load(tmp_path: Path) -> None:
    """The same check does see piper and onnxruntime after a real speech request."""
    after = run_app(tmp_path, "--speak")["after_speech"]
    assert {"piper", "onnxruntime"} <= set(after), after
