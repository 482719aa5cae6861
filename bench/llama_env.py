"""Shared set-up of bench/swap.py and bench/budget.py: GGUF models and llamacpp servers."""

from __future__ import annotations

import os
import sys
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from common import clean_env, free_port, spawn

NAMES = ("model-a", "model-b", "model-c")
N_CTX, N_PARALLEL, N_THREADS = 2048, 1, 1
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
log_level = "warning"

[bindings.local]
type = "llamacpp"
models_folders = ["{models}"]
n_ctx = {n_ctx}
n_parallel = {n_parallel}
n_threads = {n_threads}

[defaults]
ttt = "local"

[resources]
keep_alive_s = -1
{resources}
"""


def write_models(folder: Path, kind: str) -> str:
    """Three GGUF files named NAMES in `folder`; returns what they are."""
    if kind == "smollm2":
        from lollms_llamacpp.serve import smollm2_path

        source = smollm2_path()
        if source is not None:
            for name in NAMES:
                os.symlink(source, folder / f"{name}.gguf")
            return "SmolLM2-135M-Instruct Q4_1 (one file, linked under three names)"
    from lollms_llamacpp.tiny_gguf import write_tiny_gguf

    for seed, name in enumerate(NAMES):
        write_tiny_gguf(folder / f"{name}.gguf", seed=seed)
    return "tiny random llama GGUFs (0.5 MB each)"


def server(stack: ExitStack, folder: Path, models: Path, resources: str) -> tuple[str, int]:
    """Start a lollms-server over the GGUF files in `models`; returns its URL and pid."""
    port = free_port()
    config = folder / f"lollms-{port}.toml"
    config.write_text(
        CONFIG.format(
            port=port, models=models, n_ctx=N_CTX, n_parallel=N_PARALLEL,
            n_threads=N_THREADS, resources=resources,
        )
    )  # fmt: skip
    env = clean_env({"LOLLMS_DATA_DIR": str(folder / f"data-{port}")})
    cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
    url = f"http://127.0.0.1:{port}"
    log = folder / f"lollms-{port}.log"
    started = stack.enter_context(spawn(cli, env, f"{url}/api/v1/health", log=log))
    return url, started.pid


def loaded_memory(url: str) -> tuple[int, int]:
    """Sum of `lollms_model_memory_bytes` and the value of `lollms_loaded_models` now."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    reported = loaded = 0
    for line in text.splitlines():
        if line.startswith("lollms_model_memory_bytes{"):
            reported += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("lollms_loaded_models "):
            loaded = int(float(line.rsplit(" ", 1)[1]))
    return reported, loaded
