"""The ceiling of bench/fleet_throughput.py: the same llama.cpp workers with no lollms-server.

Two `python -m lollms_llamacpp.worker` processes (the program the llamacpp binding spawns, with
the arguments the benchmark's nodes give it) are called straight on their OpenAI-compatible
`/v1/chat/completions`, whole, by the same number of clients: one worker against two (request
`i` to worker `i % 2`). Their ratio is what the machine allows two single-threaded llama.cpp
processes; the fleet's ratio can only come close to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WORKER_ARGS = ["--alias", "model", "--n-ctx", "1024", "--n-parallel", "1", "--n-threads", "1"]
READY = "LOLLMS_WORKER_READY "


@contextmanager
def bare_worker(gguf: Path, log: Path) -> Iterator[tuple[str, int]]:
    """A llama.cpp worker serving `gguf` until the block ends; its URL and pid."""
    command = [sys.executable, "-m", "lollms_llamacpp.worker", "--model", str(gguf), *WORKER_ARGS]
    with log.open("wb") as err:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(b"\n")  # no API key
            process.stdin.flush()
            for line in process.stdout:
                text = line.decode()
                if text.startswith(READY):
                    yield json.loads(text[len(READY) :])["url"], process.pid
                    return
            raise RuntimeError(f"the worker exited: {log.read_text(errors='replace')[-2000:]}")
        finally:
            process.terminate()
            process.wait(timeout=10)


def chat(url: str, prompt: str, tokens: int) -> int:
    """One whole chat completion; the tokens it generated."""
    body = {
        "model": "model",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        return int(json.loads(answer.read())["usage"]["completion_tokens"])
