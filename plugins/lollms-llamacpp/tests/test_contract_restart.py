"""Crashed model processes come back: health says `restartable`, `restart()` starts them again,
and in the app the core's health monitor does so by itself, without any request (real workers,
the tiny GGUF, kill -9)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from lollms_llamacpp import LlamaCppBinding

from lollms_server.bindings import Health
from lollms_server.config_sections import ResilienceConfig
from lollms_server.errors import BackendUnavailable
from lollms_server.keys import LIFECYCLE, MONITOR, REGISTRY
from lollms_server.testing import serve_binding, started_binding, within

from .conftest import TINY

TIMEOUT = 60.0
INTERVAL_S = 0.5  # the health monitor's interval in the app test
RESTART_WITHIN_S = 20.0  # kill -9 to a new worker serving, with no request


def settings(folder: Path) -> dict[str, Any]:
    """The tiny model only, one thread: quick to (re)start."""
    return {"models_folders": [str(folder)], "n_ctx": 512, "n_parallel": 1, "n_threads": 1}


@pytest_asyncio.fixture
async def binding(request: pytest.FixtureRequest, tiny_models: Path) -> AsyncIterator[Any]:
    """A started llamacpp instance over the tiny models."""
    async with started_binding(
        LlamaCppBinding, "local", settings(tiny_models), request=request
    ) as started:
        yield started


def worker(binding: LlamaCppBinding, model: str = TINY) -> psutil.Process:
    """The OS process serving `model`."""
    pid = binding._processes[model].pid
    assert pid is not None
    return psutil.Process(pid)


async def until(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT) -> None:
    """Wait until `condition()` holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        await asyncio.sleep(0.05)


async def killed(binding: LlamaCppBinding, model: str = TINY) -> int:
    """kill -9 the model's worker and wait until the binding sees it gone; its pid."""
    victim = worker(binding, model)
    victim.send_signal(signal.SIGKILL)
    await until(lambda: not binding._processes[model].alive, "the worker's exit")
    return victim.pid


async def test_a_dead_worker_is_restartable_and_restart_brings_it_back(
    binding: LlamaCppBinding,
) -> None:
    await within(TIMEOUT, binding.load(TINY), "load")
    healthy = await binding.health()
    assert healthy.state == "up" and not healthy.restartable
    old = await killed(binding)
    health = await binding.health()
    assert health.state == "down" and health.restartable
    assert f"model {TINY!r}" in health.detail and "exit status -9" in health.detail
    await within(TIMEOUT, binding.restart(), "restart")
    assert worker(binding).pid != old and worker(binding).is_running()
    after = await binding.health()
    assert after.state == "up" and not after.restartable
    await within(TIMEOUT, binding.restart(), "a restart with nothing dead")  # a no-op
    assert worker(binding).pid == binding._processes[TINY].pid


async def test_a_failed_restart_names_the_model_and_stays_restartable(
    binding: LlamaCppBinding,
) -> None:
    await within(TIMEOUT, binding.load(TINY), "load")
    await killed(binding)
    good = binding.settings
    # the worker exits at start-up
    binding.settings = replace(good, extra_args={"n_ctx": "not a number"})
    with pytest.raises(BackendUnavailable) as caught:
        await within(TIMEOUT, binding.restart(), "restart")
    assert caught.value.binding == "local"
    assert "could not restart the llama.cpp process of 'tiny'" in caught.value.message
    health = await binding.health()
    assert health.state == "down" and health.restartable  # the monitor will try again
    assert f"model {TINY!r}" in health.detail and "did not start again" in health.detail
    binding.settings = good
    await within(TIMEOUT, binding.restart(), "restart")
    assert (await binding.health()).state == "up"


async def test_an_unloaded_model_is_not_restarted(binding: LlamaCppBinding) -> None:
    await within(TIMEOUT, binding.load(TINY), "load")
    await killed(binding)
    binding.settings = replace(binding.settings, extra_args={"n_ctx": "not a number"})
    with pytest.raises(BackendUnavailable):
        await within(TIMEOUT, binding.restart(), "restart")
    await binding.unload(TINY)  # on purpose: nothing left to bring back
    health = await binding.health()
    assert health.state == "up" and not health.restartable
    await binding.restart()
    assert TINY not in binding._processes


async def test_the_health_monitor_restarts_a_killed_worker_without_any_request(
    tiny_models: Path, tmp_path: Path
) -> None:
    resilience = ResilienceConfig(health_interval_s=INTERVAL_S)
    async with serve_binding(
        LlamaCppBinding,
        "local",
        settings(tiny_models),
        tmp_path / "data",
        TINY,
        resilience=resilience,
    ) as served:
        binding = served.app[REGISTRY].get("local")
        monitor = served.app[MONITOR]
        assert isinstance(binding, LlamaCppBinding)
        body = {"binding_name": "local", "model_name": TINY}
        loaded = await within(TIMEOUT, served.post("/api/v1/load_model", json=body), "load")
        assert loaded.status == 200, await loaded.text()
        await until(lambda: monitor.latest.get("local", Health("down")).state == "up", "up")
        killed_at = time.monotonic()
        old = await killed(binding)

        def serving_again() -> bool:
            process = binding._processes.get(TINY)
            return process is not None and process.alive and process.pid != old

        await until(serving_again, "a new worker", RESTART_WITHIN_S)
        new = worker(binding)
        assert new.is_running() and new.status() != psutil.STATUS_ZOMBIE
        await until(lambda: monitor.latest["local"].state == "up", "up again", RESTART_WITHIN_S)
        assert time.monotonic() - killed_at < RESTART_WITHIN_S
        ready = await served.get("/api/v1/ready")
        assert ready.status == 200, await ready.text()
        assert (await ready.json())["instances"]["local"]["state"] == "up"
        metrics = await (await served.get("/metrics")).text()
        assert 'lollms_restarts_total{instance="local",outcome="ok"} 1.0' in metrics
        assert 'lollms_restarts_total{instance="local",outcome="failed"} 0.0' in metrics
        assert ("local", TINY) in served.app[LIFECYCLE].loaded  # still booked as loaded
        generate = {
            "input_data": [{"type": "text", "data": "hi"}],
            "model_name": TINY,
            "parameters": {"max_tokens": 3},
        }
        answer = await within(TIMEOUT, served.post("/api/v1/generate", json=generate), "gen")
        assert answer.status == 200, await answer.text()
        assert worker(binding).pid == new.pid  # the monitor's worker served it
