"""Helpers for a plugin's backend fixtures: ports, waiting, starting bindings, skip-or-fail."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import aiohttp
import pytest
from marshmallow import RAISE, ValidationError

from ..binding_context import BindingContext
from ..bindings import Binding
from ..errors import BackendTimeout, BackendUnavailable, ConfigError, MissingDependency
from ..health import check as check_health
from .plugin import backend_mode_of

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Errors from `startup()` that mean "the backend is not there", not "the binding is broken".
STARTUP_UNAVAILABLE = (BackendUnavailable, BackendTimeout, MissingDependency, OSError, TimeoutError)


def backend_unavailable(where: pytest.FixtureRequest | pytest.Config, reason: str) -> NoReturn:
    """Skip the test under `--backend=auto`; fail it under `--backend=require` (CI)."""
    config = where if isinstance(where, pytest.Config) else where.config
    if backend_mode_of(config) == "require":
        pytest.fail(f"real backend unavailable (--backend=require): {reason}", pytrace=False)
    pytest.skip(f"real backend unavailable: {reason} (use --backend=require to fail instead)")


def modules_imported_by(code: str, modules: Iterable[str]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `code` (sorted): the
    check that a plugin keeps its heavy imports out of the server's start-up."""
    names = sorted(set(modules))
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {names!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [name for name in done.stdout.strip().split(",") if name]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (for a backend process to listen on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, timeout_s: float = 30.0, interval: float = 0.2) -> bool:
    """Poll `url` until it answers with a status below 500; False after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, interval * 5)) as response:
                if int(response.status) < 500:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http_status(
    port: int, path: str, headers: dict[str, str] | None = None, timeout_s: float = 5.0
) -> int:
    """The status of a GET on 127.0.0.1:`port`, 0 when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    except OSError:
        return 0
    finally:
        conn.close()


async def wait_for_http_async(url: str, timeout_s: float = 30.0, interval: float = 0.2) -> bool:
    """Async `wait_for_http`, for async fixtures."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    client_timeout = aiohttp.ClientTimeout(total=max(0.1, interval * 5))
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return True
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(interval)


async def within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    """Await `awaitable`; fail the test (not hang it) when it takes longer than `seconds`."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if not scope.expired():
            raise
    pytest.fail(f"{what} did not finish within {seconds}s", pytrace=False)


def build_binding(
    cls: type[Binding],
    instance_name: str,
    settings: Mapping[str, Any] | None = None,
    context: BindingContext | None = None,
) -> Binding:
    """Instantiate `cls` the way the server does: raw settings validated by its ConfigSchema,
    and the server's context (default: the data dir of `$LOLLMS_DATA_DIR`)."""
    try:
        loaded = cls.ConfigSchema().load(dict(settings or {}), unknown=RAISE)
    except ValidationError as exc:
        raise ConfigError(f"settings of {cls.__name__}: {exc.messages}") from exc
    return cls(instance_name, loaded, context=context)


@asynccontextmanager
async def started_binding(
    cls: type[Binding],
    instance_name: str = "contract",
    settings: Mapping[str, Any] | None = None,
    *,
    request: pytest.FixtureRequest | None = None,
    timeout_s: float = 60.0,
    expect_down: bool = False,
) -> AsyncIterator[Binding]:
    """A binding after `startup()` and until `shutdown()`, healthy unless `expect_down`.

    With `request` given, a backend that cannot start (or never becomes healthy within
    `timeout_s`) goes through `backend_unavailable`: skipped under `--backend=auto`, failed
    under `--backend=require`. With `expect_down`, start-up errors are tolerated (as the server
    does) but start-up must still return within `timeout_s`.
    """
    binding = build_binding(cls, instance_name, settings)
    try:
        await _start(binding, request, timeout_s, expect_down)
        yield binding
    finally:
        await _stop(binding, timeout_s)


async def _start(
    binding: Binding, request: pytest.FixtureRequest | None, timeout_s: float, expect_down: bool
) -> None:
    name = binding.instance_name
    started = time.monotonic()
    scope = asyncio.timeout(timeout_s)
    try:
        async with scope:
            await binding.startup()
    except STARTUP_UNAVAILABLE as exc:
        problem = f"startup() of {name!r} failed: {exc!r}"
        if scope.expired():
            problem = f"startup() of {name!r} did not finish within {timeout_s}s"
            if expect_down:
                pytest.fail(problem, pytrace=False)
        if expect_down:
            log.info("%s (expected: the backend is down)", problem)
            return
        if request is None:
            raise
        backend_unavailable(request, problem)
    if expect_down:
        return
    deadline = started + timeout_s
    health = await check_health(binding)
    while health.state == "down" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        health = await check_health(binding)
    if health.state == "down":
        reason = f"{name!r} still down after {timeout_s}s: {health.detail}"
        if request is None:
            raise BackendUnavailable(reason, binding=name)
        backend_unavailable(request, reason)


async def _stop(binding: Binding, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await binding.shutdown()
    except Exception:  # a failing shutdown must not hide the test's own outcome
        log.exception("shutdown of %s failed", binding.instance_name)
