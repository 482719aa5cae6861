"""A model's llama.cpp server process: spawn, wait until ready, log its output, stop, measure."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import secrets
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import psutil

from lollms_server.sdk import BackendError, BackendTimeout, BackendUnavailable

from .worker import READY

LEVEL = re.compile(r"^\S+ ([IWE]) ")
LEVELS = {"E": logging.ERROR, "W": logging.WARNING}
TAIL_LINES = 20
#: Lines without a llama.cpp level (Python's, the worker's) that say what went wrong.
CAUSE = re.compile(r"error:|failed to|cannot |exception", re.IGNORECASE)


class ModelProcess:
    """One `python -m lollms_llamacpp.worker` process serving one model."""

    def __init__(
        self,
        instance: str,
        model: str,
        args: Sequence[str],
        log: logging.Logger,
        env: Mapping[str, str] | None = None,
    ):
        self.instance = instance
        self.model = model
        self.args = list(args)
        self.env = dict(env or {})  # set on top of the server's environment (the GPU it sees)
        self.log = log
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.cause: str | None = None  # the first error line: llama.cpp's root cause
        self._pumps: list[asyncio.Task[None]] = []
        # the worker's lines while it starts, logged once the start is over: at their levels
        # when it serves, at debug level when it fails (its one error line says why)
        self._held: list[tuple[int, str]] | None = None
        self._ready: asyncio.Future[str] | None = None
        self.api_key = secrets.token_urlsafe(24)
        self.stopping = False  # set once the binding ends the process itself (unload)

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.returncode is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal)."""
        return self.process.returncode if self.process else None

    def __repr__(self) -> str:
        return f"ModelProcess({self.model!r}, pid={self.pid}, url={self.url!r})"

    def what(self) -> str:
        """How errors name this process."""
        return f"llama.cpp process of model {self.model!r} (instance {self.instance!r})"

    async def start(self, timeout_s: float) -> None:
        """Spawn the worker, wait for its address and for /health; raise ours on failure."""
        self._ready = asyncio.get_running_loop().create_future()
        self._held = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lollms_llamacpp.worker",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.env} if self.env else None,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"{self.api_key}\n".encode())
        # The pumps outlive the request that started the process: in a context of their own,
        # their lines carry no request id (the server's log lines read it from a contextvar).
        self._pumps = [
            asyncio.create_task(
                self._pump(self.process.stdout, is_stdout=True), context=contextvars.Context()
            ),
            asyncio.create_task(
                self._pump(self.process.stderr, is_stdout=False), context=contextvars.Context()
            ),
        ]
        try:
            async with asyncio.timeout(timeout_s):
                self.url = await self._wait_ready()
                await self._wait_healthy()
        except TimeoutError:
            await self.stop(2.0)
            late = BackendTimeout(
                f"{self.what()} was not ready within {timeout_s}s{self._tail_text()}",
                binding=self.instance,
            )
            self._release(late)
            raise late from None
        except BaseException as exc:
            await self.stop(2.0)
            self._release(exc)
            raise
        self._release(None)
        self.log.info("%s serving at %s (pid %s)", self.what(), self.url, self.pid)

    def _release(self, failure: BaseException | None) -> None:
        """Log the lines held while starting; a failed start: at debug level, then one error
        line with its cause (an ended request or a shutdown is no failure of the worker)."""
        held, self._held = self._held or [], None
        for level, line in held:
            self.log.log(level if failure is None else logging.DEBUG, "[%s] %s", self.model, line)
        if isinstance(failure, (BackendError, BackendTimeout)):
            self.log.error("%s", failure.message)

    async def _wait_ready(self) -> str:
        assert self.process is not None and self._ready is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.process.wait())
        waiting: set[asyncio.Future[Any]] = {self._ready, exited}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if self._ready.done():
            return self._ready.result()
        await asyncio.gather(*self._pumps, return_exceptions=True)  # collect the last words
        raise BackendError(
            f"{self.what()} exited with status {self.returncode} while starting{self._tail_text()}",
            binding=self.instance,
        )

    async def _wait_healthy(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not self.alive:
                    raise BackendError(
                        f"{self.what()} exited with status {self.returncode} while loading"
                        f"{self._tail_text()}",
                        binding=self.instance,
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)

    async def _pump(self, stream: asyncio.StreamReader, *, is_stdout: bool) -> None:
        """Forward a pipe line by line to the logger (and the ready line to `start`)."""
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the pipe buffer limit: read what there is
                raw = await stream.read(65536)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip()
            if is_stdout and line.startswith(READY) and self._ready and not self._ready.done():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._ready.set_result(str(json.loads(line[len(READY) :])["url"]))
                    continue
            if not line:
                continue
            self.tail.append(line)
            match = LEVEL.match(line)
            level = LEVELS.get(match.group(1), logging.DEBUG) if match else logging.DEBUG
            if line.startswith("lollms_llamacpp.worker:"):
                level = logging.ERROR
            if self.cause is None and (
                level == logging.ERROR or (not match and CAUSE.search(line))
            ):
                self.cause = line[match.end() :] if match else line
            if self._held is not None:  # starting: logged once the start is over
                self._held.append((level, line))
            else:
                self.log.log(level, "[%s] %s", self.model, line)

    def _tail_text(self) -> str:
        """`: <root cause> | <last warning and error lines>`: what a failed start reports.

        llama.cpp names the cause once, then logs a cascade of "failed to ..." lines; the
        first error line is the one that says why (e.g. a K cache type the model's head
        size does not allow)."""
        lines = [line for line in self.tail if " I " not in line[:20]][-4:]
        if self.cause is not None:
            lines = [f"cause: {self.cause}", *(ln for ln in lines if self.cause not in ln)]
        return (": " + " | ".join(lines)) if lines else ""

    async def stop(self, grace_s: float) -> None:
        """Ask the worker to exit (SIGTERM), kill it after `grace_s`, and reap it."""
        process = self.process
        self.stopping = True
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                self.log.warning("%s ignored SIGTERM for %ss: killing it", self.what(), grace_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process is not None and process.returncode is None:
            await process.wait()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._pumps = []

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker process, where the OS tells it."""
        if not self.alive or self.pid is None:
            return None
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, OSError):
            return None

    async def ping(self, timeout_s: float) -> str | None:
        """None when the process runs and /health answers 200; else what is wrong."""
        if not self.alive:
            return f"{self.what()} is not running (exit status {self.returncode})"
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{self.url}/health") as response,
            ):
                if response.status == 200:
                    return None
                return f"{self.what()} answers /health with {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{self.what()} does not answer /health ({type(exc).__name__})"


def unavailable(process: ModelProcess) -> BackendUnavailable:
    """The error for a request that met a dead (or unloaded) process."""
    if process.stopping:
        return BackendUnavailable(
            f"{process.what()} was unloaded during the request; the next request loads it again",
            binding=process.instance,
            retry_after=1,
        )
    return BackendUnavailable(
        f"{process.what()} died (exit status {process.returncode}); it is restarted by the "
        "health monitor or by the next request",
        binding=process.instance,
        retry_after=1,
    )
