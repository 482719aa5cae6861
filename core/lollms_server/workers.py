"""`serve --workers N`: N server processes on one port, each with its own event loop.

The parent checks the config, then starts N children (`serve` again, with LOLLMS_WORKER set);
each listens with SO_REUSEPORT, so the kernel spreads new connections over them. The parent
forwards SIGTERM/SIGINT to every worker (each drains as one server does), restarts a worker
that dies on its own (not one that found the config wrong: then all stop), and exits 0 once
every worker has exited 0. A worker whose parent is gone
drains and exits on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from aiohttp import web

from .config import Config
from .errors import ConfigError
from .plugins import Plugins
from .security.limits_storage import is_shared, limits_uri

log = logging.getLogger(__name__)
WORKER_ENV = "LOLLMS_WORKER"  # "<index>/<count>/<supervisor pid>" in a worker's environment
WORKER_HEADER = "X-Lollms-Worker"
CRASH_LOOP_S = 10.0  # a worker that dies this soon after its start is restarted after a pause
RESTART_DELAY_S = 5.0
CONFIG_ERROR_STATUS = 2  # what `lollms-server` exits with on a ConfigError
PARENT_POLL_S = 1.0


def worker_index() -> str | None:
    """This process's worker index under `serve --workers N`, or None."""
    value = os.environ.get(WORKER_ENV, "")
    return value.partition("/")[0] or None


def check_workers(config: Config, plugins: Plugins, workers: int) -> None:
    """ConfigError when N > 1 cannot work (a local-model instance, port 0); a warning for
    what each worker keeps to itself with the embedded defaults (memory rate limits)."""
    if workers <= 1:
        return
    if config.port == 0:
        raise ConfigError("--workers needs a fixed port (got 0): set --port or [server] port")
    classes = plugins.binding_classes
    local = sorted(
        name
        for name, spec in config.bindings.items()
        if spec.enabled and spec.type in classes and classes[spec.type].loads_models
    )
    if local:
        raise ConfigError(
            f"--workers {workers} refused: binding instance(s) {', '.join(local)} hold models "
            "in the server process, and every worker would load them again; serve local models "
            "with --workers 1 (one process owns them) and let a multi-worker server reach them "
            "through a lollms-remote instance, or disable them here"
        )
    if not is_shared(limits_uri(config.security)):
        log.warning(
            "--workers %d with [security] rate_limit_storage = %r: each worker counts its own "
            "rate limits, so a key or address gets up to %d times its limits; set "
            "rate_limit_storage = \"async+redis://host:6379\" to share them",
            workers, config.security.rate_limit_storage, workers,
        )  # fmt: skip


def worker_command(config_path: Path, host: str, port: int, log_format: str | None) -> list[str]:
    """The command line of one worker."""
    command = [sys.executable, "-m", "lollms_server.cli", "--config", str(config_path)]
    if log_format:
        command += ["--log-format", log_format]
    return [*command, "serve", "--host", host, "--port", str(port)]


class Supervisor:
    """Starts, restarts and stops the worker processes."""

    def __init__(self, command: list[str], workers: int) -> None:
        self.command = command
        self.count = workers
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.stopping = False

    def _start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: f"{index}/{self.count}/{os.getpid()}"}
        process = subprocess.Popen(self.command, env=env, start_new_session=True)
        self.children[index] = (process, time.monotonic())
        log.info("worker %d started (pid %d)", index, process.pid)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for process, _started in self.children.values():
            if process.poll() is None:
                process.send_signal(signum)

    def run(self) -> int:
        """Run the workers until a signal stops them; the worst exit status of the workers."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        for index in range(self.count):
            if not self.stopping:  # a signal during the start-up starts no more workers
                self._start(index)
        worst = 0
        restarts: dict[int, float] = {}  # worker index -> when to start it again
        while self.children or (restarts and not self.stopping):
            time.sleep(0.1)
            for index, due in list(restarts.items()):
                if not self.stopping and time.monotonic() >= due:
                    del restarts[index]
                    self._start(index)
            for index, (process, started) in list(self.children.items()):
                status = process.poll()
                if status is None:
                    continue
                del self.children[index]
                if self.stopping:
                    worst = max(worst, abs(status))
                    continue
                log.error("worker %d (pid %d) exited with %d", index, process.pid, status)
                if status == CONFIG_ERROR_STATUS:  # restarting would meet the same error
                    log.error("the config is wrong; stopping every worker")
                    worst = CONFIG_ERROR_STATUS
                    self._forward(signal.SIGTERM, None)
                    continue
                early = time.monotonic() - started < CRASH_LOOP_S
                restarts[index] = time.monotonic() + (RESTART_DELAY_S if early else 0.0)
        return worst


async def follow_parent(app: web.Application) -> None:
    """On-startup hook of a worker: drain and exit (SIGTERM to itself) once the parent is
    gone, so that no worker outlives a supervisor killed with -9."""
    parent = int(os.environ[WORKER_ENV].split("/")[2])  # it may be gone already

    async def watch() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 (no event tells a parent's death)
            await asyncio.sleep(PARENT_POLL_S)
        log.warning("the supervisor (pid %d) is gone: draining", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.get_running_loop().create_task(watch())
    app.on_cleanup.append(lambda _app: _cancel(task))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


async def add_worker_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare of a worker: which worker answered (its index, not its pid)."""
    index = worker_index()
    if index is not None:
        response.headers[WORKER_HEADER] = index
