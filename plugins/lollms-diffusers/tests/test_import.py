"""The plugin imports no torch at import, registration, app creation or start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers", "accelerate", "PIL", "numpy", "av")
SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from aiohttp.test_utils import TestClient, TestServer
import lollms_diffusers.plugin
from lollms_server.app import create_app
from lollms_server.config import Config, InstanceConfig, prepare_data_dir
from lollms_server.plugins import load_plugins

async def main():
    data = Path(sys.argv[1])
    settings = {"models_folders": [sys.argv[2]], "use_data_dir": True}
    instance = InstanceConfig(name="d", type="diffusers", settings=settings)
    config = Config(data_dir=data, bindings={"d": instance}, defaults={"tti": "d"})
    prepare_data_dir(config)
    plugins = load_plugins({"diffusers": lollms_diffusers.plugin}, entry_points=False)
    async with TestClient(TestServer(create_app(config, plugins))) as client:
        health = await client.get("/api/v1/health")
        models = await client.get("/api/v1/list_available_models/d")
        active = await client.get("/api/v1/list_active_bindings")
        statuses = [health.status, models.status, active.status]
        names = [m["name"] for m in (await models.json())["models"]]
    print(json.dumps({"statuses": statuses, "names": names, "heavy": sorted(
        name for name in sys.argv[3].split(",") if name in sys.modules)}))

asyncio.run(main())
"""


def test_serving_and_listing_models_imports_no_torch(tiny_models: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), str(tiny_models), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200, 200]
    assert sorted(report["names"]) == ["tiny-animatediff", "tiny-audioldm", "tiny-sd"]
    assert report["heavy"] == [], f"imported at start-up: {report['heavy']}"
