"""Browser tests: the real app on a real port (in a thread), driven by Debian's chromium.

One server per session serves echo, a recording echo and every real backend of backends.py
(`nox -s integration` installs them all). Playwright's own browser download does not work
offline, so the tests launch the system `chromium` (`apt-get install chromium`). Without it the
tests are skipped locally, and without a real backend the tests that use it; in CI (`CI` set,
.ci/run installs chromium) both fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lollms_server.app import create_app
from lollms_server.bindings import Chunk, GenerationRequest
from lollms_server.builtin.echo import EchoBinding
from lollms_server.config import parse_config, prepare_data_dir
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import REGISTRY
from lollms_server.plugins import load_plugins

from .backends import RealBackends, start_real_backends

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
GENERATION_TYPES = ("ttt", "tti", "i2i", "tts", "stt", "ttv", "ttm", "audio2audio")


def chromium_path() -> str | None:
    """The system chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def missing(reason: str) -> None:
    """Skip locally, fail in CI (CI installs chromium and playwright)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


class RecordingBinding(EchoBinding):
    """Echo that records what its streams did, and reports progress while it draws images."""

    name = "recording"
    title = "Recording echo (browser tests)"
    description = "Echo that records every stream's tokens and whether it was closed."

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.streams: list[StreamRecord] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Echo's stream, recorded; media first reports three progress steps."""
        record = StreamRecord(request.model, request.generation_type)
        self.streams.append(record)
        try:
            if request.generation_type in ("tti", "i2i"):
                for step in range(1, 4):
                    yield Chunk(
                        type="info", content=f"step {step}/3", metadata={"step": step, "total": 3}
                    )
                    await asyncio.sleep(0.4)
            async for chunk in super().stream(request):
                record.yielded += 1
                yield chunk
            record.finished = True
        finally:
            record.closed = True


@dataclass
class StreamRecord:
    """What one stream of the recording binding did."""

    model: str
    generation_type: str
    yielded: int = 0
    finished: bool = False
    closed: bool = False


def describe_weather(city: str, days: int = 1) -> str:
    """Forecast for a city (demo function of the browser tests)."""
    return f"{city}: sunny for {days} days"


def convert_units(value: float, unit: str, target: str) -> float:
    """Convert a value between units of length."""
    return value


class DemoPlugin:
    """Registers the recording binding, two personalities and two functions."""

    @hookimpl
    def register_bindings(self) -> list[type[EchoBinding]]:
        return [RecordingBinding]

    @hookimpl
    def register_personalities(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "lollms",
                "author": "ParisNeo",
                "version": "1.0",
                "category": "generic",
                "language": "english",
                "tags": ["assistant", "general"],
                "personality_description": "A helpful general-purpose assistant.",
                "personality_conditioning": "You are lollms, a helpful assistant.",
                "welcome_message": "Welcome! How can I help?",
                "model_temperature": 0.7,
                "model_n_predicts": 512,
            },
            {
                "name": "coder",
                "author": "lollms team",
                "version": "0.3",
                "category": "programming",
                "language": "english",
                "tags": ["code", "python"],
                "personality_description": "Writes and reviews Python code.",
                "personality_conditioning": "You write concise, correct Python.",
                "model_temperature": 0.2,
                "anti_prompts": ["###"],
            },
        ]

    @hookimpl
    def register_functions(self) -> list[Any]:
        return [describe_weather, convert_units]


@dataclass
class LiveServer:
    """The app served on 127.0.0.1 from a background thread's event loop."""

    app: web.Application
    real: RealBackends = field(default_factory=RealBackends)
    url: str = ""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    runner: web.AppRunner | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.runner = web.AppRunner(self.app, handler_cancellation=True)
                self.loop.run_until_complete(self.runner.setup())
                site = web.TCPSite(self.runner, "127.0.0.1", 0)
                self.loop.run_until_complete(site.start())
                host, port = self.runner.addresses[0][:2]
                self.url = f"http://{host}:{port}"
            except Exception as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="lollms-live-server", daemon=True)
        self.thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(30)
        self.loop.close()

    @property
    def recorder(self) -> RecordingBinding:
        binding = self.app[REGISTRY].get("rec")
        assert isinstance(binding, RecordingBinding)
        return binding


@pytest.fixture(scope="package")
def real_backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBackends]:
    """Every real backend (backends.py), started once; in CI a missing one fails the tests."""
    backends = start_real_backends(tmp_path_factory.mktemp("backends"))
    try:
        if backends.missing and os.environ.get("CI"):
            pytest.fail(f"real backends missing in CI: {backends.missing}")
        yield backends
    finally:
        backends.close()


@pytest.fixture(scope="package")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, real_backends: RealBackends
) -> Iterator[LiveServer]:
    """The app with echo, a recording instance, a demo plugin and every real backend."""
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    config = parse_config(
        {
            "server": {"data_dir": str(data_dir)},
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "delay_ms": 30},
                "rec": {"type": "recording", "default_model": "slow", "delay_ms": 150},
                **real_backends.instances,
            },
            "defaults": dict.fromkeys(GENERATION_TYPES, "echo"),
        }
    )
    prepare_data_dir(config)
    plugins = load_plugins({"webdemo": DemoPlugin()})
    server = LiveServer(create_app(config, plugins), real=real_backends)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def real_instance(live_server: LiveServer) -> Callable[[str], str]:
    """The name of a configured real instance (skipped locally, failed in CI when missing)."""

    def get(name: str) -> str:
        if name not in live_server.real.instances:
            missing(f"real backend {name!r} is not set up: {live_server.real.missing.get(name)}")
        return name

    return get


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's chromium under playwright (package scope: the sync API holds an event loop
    while it runs, which the async tests of other folders must not find)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test,browser]')")
    executable = chromium_path()
    if executable is None:
        missing("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ConsoleLog:
    """Console errors and uncaught page errors of one page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")


@pytest.fixture
def console() -> ConsoleLog:
    """Where the page fixture collects console errors."""
    return ConsoleLog()


@pytest.fixture
def page(browser: Any, console: ConsoleLog, live_server: LiveServer) -> Iterator[Any]:
    """A fresh 1280x800 page; the test fails on any console error it did not expect."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    yield page
    context.close()
    assert console.errors == [], "\n".join(console.errors)
