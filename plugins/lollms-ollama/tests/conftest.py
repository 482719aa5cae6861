"""Fixtures of the lollms-ollama tests: real processes that answer Ollama's API.

- `echo_backend`: a second lollms-server serving the built-in echo binding (and a vision-capable
  `probe` echo) through its Ollama face; the unit tests use it.
- `ollama_backend`: the contract backend. A real `ollama serve` when `ollama` is on PATH (tiny
  GGUFs imported through Modelfiles); otherwise a second lollms-server serving the same GGUFs
  with the llamacpp binding through its Ollama face. `LOLLMS_TEST_OLLAMA=face` forces the latter.
  The header and the summary of the pytest run say which one was used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.testing import backend_unavailable

from .servers import (
    LOLLMS_FACE,
    REAL_OLLAMA,
    Backend,
    BackendFailed,
    start_lollms_server,
    start_ollama,
)

BACKEND_ENV = "LOLLMS_TEST_OLLAMA"
INSTANCE = "lc"
TINY = f"{INSTANCE}/tiny:latest"
TINY_EMBED = f"{INSTANCE}/tiny-embed:latest"
USED: list[str] = []


def ollama_executable() -> str | None:
    """The `ollama` binary to test against, unless the face is forced."""
    if os.environ.get(BACKEND_ENV) == "face":
        return None
    return shutil.which("ollama")


def planned_backend() -> str:
    """Which contract backend this run will use, in words."""
    executable = ollama_executable()
    if executable:
        return f"{REAL_OLLAMA} ({executable})"
    return f"{LOLLMS_FACE} (a second lollms-server process, llamacpp binding)"


def pytest_report_header(config: pytest.Config) -> str:
    """Say in the run's header which Ollama backend the contract tests use."""
    return f"ollama backend: {planned_backend()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say again, at the end, which backend was actually started."""
    for used in USED:
        terminalreporter.write_line(f"ollama backend used: {used}")


@pytest.fixture(scope="session")
def echo_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A second lollms-server: `echo` (no vision) and `eye` (probe echo with vision)."""
    bindings = {
        "echo": {"type": "echo", "delay_ms": 20},
        "eye": {"type": "probe", "delay_ms": 20},
    }
    backend = start_lollms_server(tmp_path_factory.mktemp("echo-server"), bindings, probe=True)
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def tiny_ggufs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny random chat model and its embedding twin."""
    try:
        from lollms_llamacpp.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        backend_unavailable(request, f"lollms-llamacpp is not installed ({exc})")
    folder = tmp_path_factory.mktemp("models")
    write_tiny_gguf(folder / "tiny.gguf", seed=0)
    write_tiny_gguf(folder / "tiny-embed.gguf", seed=1, embedding=True)
    return folder


@pytest.fixture(scope="session")
def ollama_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_ggufs: Path
) -> Iterator[Backend]:
    """The contract backend (see the module doc), serving `lc/tiny` and `lc/tiny-embed`."""
    folder = tmp_path_factory.mktemp("ollama-backend")
    executable = ollama_executable()
    try:
        if executable:
            models = {
                TINY.removesuffix(":latest"): tiny_ggufs / "tiny.gguf",
                TINY_EMBED.removesuffix(":latest"): tiny_ggufs / "tiny-embed.gguf",
            }
            backend = start_ollama(executable, folder, models)
        else:
            settings = {
                "type": "llamacpp",
                "models_folders": [str(tiny_ggufs)],
                "embedding_models": ["tiny-embed"],
                "n_ctx": 2048,
                "n_parallel": 2,
                "n_threads": 2,
            }
            backend = start_lollms_server(folder, {INSTANCE: settings})
    except BackendFailed as exc:
        backend_unavailable(request, str(exc))
    USED.append(f"{backend.kind} at {backend.url}")
    print(f"\nollama backend: {backend.kind} at {backend.url}")
    yield backend
    backend.stop()
