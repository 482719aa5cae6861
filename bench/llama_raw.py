"""The raw-library side of bench/swap.py: llama.cpp's server (xllamacpp) started by hand.

`RawServer` is what a program without lollms-server would do to serve a GGUF model in its own
process, as the llamacpp binding does: spawn Python, import xllamacpp, build `CommonParams`
with the same settings, construct `xllamacpp.Server`, then poll `/health` until it answers 200
(every 5 ms, as fast as possible). The child reports how long the import and the
`Server(...)` call took; stopping is SIGTERM and wait.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

CHILD = """
import json, os, sys, time
began = time.perf_counter()
import xllamacpp
imported = time.perf_counter()
params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.hostnames = ["127.0.0.1"]
params.port = 0
params.model_alias = {"model"}
params.n_ctx = int(sys.argv[2])
params.n_parallel = int(sys.argv[3])
params.cpuparams.n_threads = int(sys.argv[4])
params.cpuparams_batch.n_threads = int(sys.argv[4])
server = xllamacpp.Server(params)
done = time.perf_counter()
address = str(server.listening_address)
url = address if address.startswith("http") else "http://" + address
print(json.dumps({"url": url, "import_s": imported - began, "server_s": done - imported}),
      flush=True)
sys.stdin.read()
os._exit(0)
"""


@dataclass
class RawServer:
    """One running raw llama.cpp server process and its timings."""

    process: subprocess.Popen[str]
    url: str
    ready_s: float  # spawn -> /health 200, seen from the parent
    import_s: float
    server_s: float  # the xllamacpp.Server(...) call alone

    @classmethod
    def start(cls, model: Path, n_ctx: int, n_parallel: int, n_threads: int) -> RawServer:
        """Spawn the child and wait until its /health answers 200."""
        began = time.perf_counter()
        args = [str(model), str(n_ctx), str(n_parallel), str(n_threads)]
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"raw llama.cpp server for {model} exited ({process.wait()})")
        info = json.loads(line)
        while True:
            try:
                with urllib.request.urlopen(f"{info['url']}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.005)
        ready = time.perf_counter() - began
        return cls(process, info["url"], ready, info["import_s"], info["server_s"])

    def rss_bytes(self) -> int:
        """Resident memory of the process."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> float:
        """SIGTERM and wait (as the binding's unload does); seconds it took."""
        began = time.perf_counter()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        return time.perf_counter() - began


def chat(url: str, model: str, headers: dict[str, str] | None = None) -> float:
    """One non-streamed chat completion of one token; seconds it took (raises on non-200)."""
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hello"}]}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        payload: dict[str, Any] = json.loads(response.read())
    if not payload.get("choices"):
        raise RuntimeError(f"no choices in {payload}")
    return time.perf_counter() - began
