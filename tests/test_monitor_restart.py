"""The health monitor restarts crashed managed processes: a binding that runs a real child
process is killed with SIGKILL and comes back within the check interval; restarts back off and
stop at `restart_limit` per window; instances that are merely down are never restarted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.bindings import Binding, Health, ModelInfo
from lollms_server.circuit import Breakers
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import MONITOR, REGISTRY
from lollms_server.plugins import load_plugins
from lollms_server.registry import Registry
from lollms_server.resources.monitor import HealthMonitor

Client = TestClient[Any, Any]
INTERVAL_S = 1.0
SLEEPER = "import time; time.sleep(1e9)"


class ChildBinding(Binding):
    """Manages one real child process; down and restartable once it has died."""

    name = "child"
    capabilities = frozenset({"ttt"})

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def startup(self) -> None:
        """Start the child."""
        await self.restart()

    async def restart(self) -> None:
        """Start a new child (the old one is dead)."""
        self.process = await asyncio.create_subprocess_exec(sys.executable, "-c", SLEEPER)
        self.starts += 1

    async def shutdown(self) -> None:
        """Stop the child."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def health(self) -> Health:
        """Up while the child runs; down and restartable once it exited."""
        if self.process is None or self.process.returncode is not None:
            code = None if self.process is None else self.process.returncode
            return Health("down", f"child exited ({code})", 0.0, restartable=True)
        return Health("up", f"child pid {self.process.pid}", 0.0)

    async def list_models(self) -> list[ModelInfo]:
        """One model."""
        return [ModelInfo("child")]


class ChildPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [ChildBinding]


async def test_a_killed_process_is_restarted_within_the_interval(
    make_client: Any, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        {
            "bindings": {"kid": {"type": "child"}},
            "resilience": {"health_interval_s": INTERVAL_S},
        }
    )
    client: Client = await make_client(config, plugins=load_plugins(extra={"c": ChildPlugin()}))
    binding = client.server.app[REGISTRY].get("kid")
    monitor = client.server.app[MONITOR]
    assert isinstance(binding, ChildBinding) and binding.process is not None
    await until(lambda: monitor.latest.get("kid", Health("down")).state == "up")
    first = binding.process.pid
    with caplog.at_level(logging.INFO, logger="lollms_server.resources.monitor"):
        killed_at = time.monotonic()
        os.kill(first, signal.SIGKILL)
        await until(lambda: binding.starts == 2 and monitor.latest["kid"].state == "up")
        took = time.monotonic() - killed_at
    assert took < INTERVAL_S + 1.0  # the next check saw it (within the interval), then restart
    assert binding.process.pid != first and binding.process.returncode is None
    assert "instance kid: restarting (child exited (-9))" in caplog.text
    assert "instance kid: restart ok" in caplog.text
    ready = await client.get("/api/v1/ready")
    assert ready.status == 200 and (await ready.json())["instances"]["kid"]["state"] == "up"
    metrics = await (await client.get("/metrics")).text()
    assert 'lollms_restarts_total{instance="kid",outcome="ok"} 1.0' in metrics


class Crashing(Binding):
    """Always down; `restartable` says whether a restart is asked for; restarts fail."""

    name = "crashing"

    def __init__(self, instance_name: str, restartable: bool) -> None:
        super().__init__(instance_name, {})
        self.restartable = restartable
        self.attempts: list[float] = []

    async def health(self) -> Health:
        """Down."""
        return Health("down", "process gone", 0.0, restartable=self.restartable)

    async def restart(self) -> None:
        """Fail, as a process that cannot start does."""
        self.attempts.append(time.monotonic())
        raise RuntimeError("port already in use")


async def test_restarts_back_off_and_stop_at_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    crashing, down = Crashing("crashing", True), Crashing("down", False)
    registry = Registry({"crashing": crashing, "down": down}, {})
    outcomes: list[tuple[str, str]] = []
    monitor = HealthMonitor(
        registry,
        Breakers(5, 30.0, 30.0),
        0.1,
        restart_limit=3,
        restart_window_s=60.0,
        on_restart=lambda instance, outcome: outcomes.append((instance, outcome)),
    )
    with caplog.at_level(logging.INFO, logger="lollms_server.resources.monitor"):
        task = asyncio.create_task(monitor.run())
        try:
            await until(lambda: len(outcomes) == 4, timeout_s=5.0)
            await asyncio.sleep(0.5)  # nothing more happens once the limit is reached
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert outcomes == [("crashing", "failed")] * 3 + [("crashing", "refused")]
    first, second, third = crashing.attempts
    assert second - first >= 0.1 and third - second >= 0.2  # interval x1, then x2
    assert down.attempts == []  # down but not restartable: never restarted
    assert "restart failed: RuntimeError('port already in use')" in caplog.text
    assert "instance crashing: not restarted: 3 restarts within 60s" in caplog.text


async def test_restarts_are_off_with_a_zero_limit() -> None:
    crashing = Crashing("crashing", True)
    registry = Registry({"crashing": crashing}, {})
    monitor = HealthMonitor(registry, Breakers(5, 30.0, 30.0), 0.05, restart_limit=0)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert monitor.latest["crashing"].restartable and crashing.attempts == []


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    """Wait until `condition()` holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
