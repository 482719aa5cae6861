"""A loaded model whose file is deleted and whose llama.cpp process then dies cannot come back:
the health monitor's one restart finds the file gone, the model leaves the binding and the
core's memory books with one clear log line, the instance is up again and the model is a 404
(real workers, the tiny GGUF, kill -9, keep_alive -1 so that no keep_alive hides it)."""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path

import psutil
import pytest
from lollms_llamacpp import LlamaCppBinding

from lollms_server.bindings import Health
from lollms_server.config_sections import ResilienceConfig, ResourcesConfig
from lollms_server.keys import LIFECYCLE, MONITOR, REGISTRY
from lollms_server.testing import serve_binding, within

from .conftest import TINY
from .test_contract_restart import INTERVAL_S, TIMEOUT, settings, until


async def test_a_dead_model_whose_file_is_gone_leaves_the_books_and_is_not_restarted(
    tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_models / f"{TINY}.gguf", folder / f"{TINY}.gguf")
    resilience = ResilienceConfig(health_interval_s=INTERVAL_S)
    resources = ResourcesConfig(keep_alive_s=-1)
    async with serve_binding(
        LlamaCppBinding, "local", settings(folder), tmp_path / "data", TINY, resources,
        resilience=resilience,
    ) as served:  # fmt: skip
        binding = served.app[REGISTRY].get("local")
        monitor, lifecycle = served.app[MONITOR], served.app[LIFECYCLE]
        assert isinstance(binding, LlamaCppBinding)
        body = {"binding_name": "local", "model_name": TINY}
        loaded = await within(TIMEOUT, served.post("/api/v1/load_model", json=body), "load")
        assert loaded.status == 200, await loaded.text()
        await until(lambda: monitor.latest.get("local", Health("down")).state == "up", "up")
        assert lifecycle.used_bytes() > 0
        caplog.clear()
        caplog.set_level(logging.INFO)
        (folder / f"{TINY}.gguf").unlink()
        pid = binding._processes[TINY].pid
        assert pid is not None
        psutil.Process(pid).send_signal(signal.SIGKILL)
        await until(lambda: ("local", TINY) not in lifecycle.loaded, "out of the books", 20)
        await until(lambda: monitor.latest["local"].state == "up", "up again", 20)
        assert lifecycle.used_bytes() == 0
        status = await (await served.get("/api/v1/status")).json()
        assert status["loaded"] == [] and status["devices"][0]["used_by_models_bytes"] == 0
        ready = await served.get("/api/v1/ready")
        assert ready.status == 200, await ready.text()
        for _ in range(int(4 / INTERVAL_S)):  # more monitor rounds: no further restart
            await monitor.check_due()
            monitor.restart_crashed()
        assert len(monitor.restarts.get("local", ())) <= 1
        assert not binding._processes and not binding._crashed
        gone = [r for r in caplog.records if "gone" in r.getMessage()]
        assert len(gone) == 1, [r.getMessage() for r in caplog.records]
        assert gone[0].levelno == logging.ERROR and f"{TINY!r}" in gone[0].getMessage()
        assert "restart failed" not in caplog.text
        ask = {"model": f"local/{TINY}", "messages": [{"role": "user", "content": "hi"}]}
        answer = await served.post("/v1/chat/completions", json=ask)
        assert answer.status == 404, await answer.text()
        assert (await answer.json())["error"]["code"] == "model_not_found"
