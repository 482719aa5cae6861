"""Real server processes for the tests: a second lollms-server, or `ollama serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lollms_server.testing import free_port

REAL_OLLAMA = "real ollama"
LOLLMS_FACE = "lollms-server Ollama face"
PROBE_SERVER = Path(__file__).with_name("probe_server.py")


class BackendFailed(Exception):
    """A backend process did not come up; the message holds the end of its log."""


@dataclass
class Backend:
    """A running backend process answering Ollama's API at `url`."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    detail: str = ""

    def log_tail(self, size: int = 4000) -> str:
        """The end of the process's output."""
        return self.log_path.read_text(errors="replace")[-size:]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the process (kill it if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)


def toml_value(value: Any) -> str:
    """A TOML literal of a string, number, boolean or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def config_text(port: int, data_dir: Path, bindings: dict[str, dict[str, Any]]) -> str:
    """A lollms.toml serving `bindings` on 127.0.0.1:`port`; the first instance is the default."""
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"data_dir = {toml_value(str(data_dir))}",
        "request_timeout_s = 120.0",
        'log_level = "warning"',
    ]
    for name, settings in bindings.items():
        lines.append(f"\n[bindings.{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in settings.items())
    lines.append("\n[defaults]")
    lines.append(f"ttt = {toml_value(next(iter(bindings)))}")
    return "\n".join(lines) + "\n"


def write_config(
    folder: Path, bindings: dict[str, dict[str, Any]], extra_toml: str = ""
) -> tuple[Path, int]:
    """Write `folder/lollms.toml` for a free port; return its path and the port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "lollms.toml"
    text = config_text(port, folder / "data", bindings) + extra_toml
    config.write_text(text, encoding="utf-8")
    return config, port


def server_env(folder: Path) -> dict[str, str]:
    """The environment of a lollms-server child: our LOLLMS_* variables dropped, data in folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env["LOLLMS_DATA_DIR"] = str(folder / "data")
    return env


def launch_lollms_server(
    folder: Path, config: Path, port: int, *, probe: bool = False, timeout_s: float = 60.0
) -> Backend:
    """Run `python -m lollms_server.cli` (or the probe server) on `config`, ready to answer."""
    script = [str(PROBE_SERVER)] if probe else ["-m", "lollms_server.cli"]
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *script, "--config", str(config)],
            env=server_env(folder),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    backend = Backend(LOLLMS_FACE, f"http://127.0.0.1:{port}", process, log_path)
    wait_until_up(backend, timeout_s)
    return backend


def start_lollms_server(
    folder: Path,
    bindings: dict[str, dict[str, Any]],
    *,
    probe: bool = False,
    timeout_s: float = 60.0,
) -> Backend:
    """A second lollms-server serving `bindings` on a free port, ready to answer."""
    config, port = write_config(folder, bindings)
    return launch_lollms_server(folder, config, port, probe=probe, timeout_s=timeout_s)


def start_ollama(
    executable: str, folder: Path, models: dict[str, Path], *, timeout_s: float = 120.0
) -> Backend:
    """`ollama serve` on a free port with each GGUF of `models` imported through a Modelfile."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(folder / "ollama-models"),
    }
    log_path = folder / "ollama.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    backend = Backend(REAL_OLLAMA, f"http://127.0.0.1:{port}", process, log_path, executable)
    wait_until_up(backend, timeout_s)
    for name, gguf in models.items():
        modelfile = folder / f"{name.replace('/', '_')}.Modelfile"
        modelfile.write_text(f"FROM {gguf}\n", encoding="utf-8")
        done = subprocess.run(
            [executable, "create", name, "-f", str(modelfile)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            backend.stop()
            raise BackendFailed(f"ollama create {name} failed: {done.stderr[-2000:]}")
    return backend


def wait_until_up(backend: Backend, timeout_s: float) -> None:
    """Poll GET /api/version until it answers; BackendFailed if the process dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if backend.process.poll() is not None:
            raise BackendFailed(
                f"{backend.kind} exited with {backend.process.returncode}:\n{backend.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{backend.url}/api/version", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers (e.g. 401 when it requires keys)
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    backend.stop()
    raise BackendFailed(f"{backend.kind} not up within {timeout_s}s:\n{backend.log_tail()}")
