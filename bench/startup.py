"""Start-up benchmark: time from process start to the first answered health request.

Runs `lollms-server` on its embedded defaults (fresh data dir each run, so the first-run config
and database writing is included) and, as the baseline in the same invocation, a bare aiohttp
app answering one route. Prints a Markdown table; `--write` updates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BARE_APP = """
import sys
from aiohttp import web
async def health(request):
    return web.json_response({"status": "ok"})
app = web.Application()
app.router.add_get("/api/v1/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_health(command: list[str], port: int, env: dict[str, str]) -> float:
    """Seconds from spawning `command` until /api/v1/health answers 200."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.005)
    finally:
        process.terminate()
        process.wait(timeout=10)


def child_env() -> dict[str, str]:
    """This environment, less LOLLMS_* settings and PYTHONDONTWRITEBYTECODE: a pip install
    compiles every module, while a uv venv does not and that setting keeps Python from caching
    what it compiles (every start then compiles from source: 1.1 s instead of 0.5 s here)."""
    skipped = ("LOLLMS_", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(skipped)}


def measure(runs: int) -> dict[str, list[float]]:
    """Alternate lollms-server and the bare baseline, `runs` times each, after one untimed
    start of each (which writes the bytecode caches a pip install would have written)."""
    results: dict[str, list[float]] = {"lollms-server": [], "bare aiohttp": []}
    for run in range(runs + 1):
        with tempfile.TemporaryDirectory() as data:
            port = free_port()
            env = child_env() | {"LOLLMS_DATA_DIR": data, "LOLLMS_PORT": str(port)}
            command = [sys.executable, "-m", "lollms_server.cli"]
            served = time_to_health(command, port, env)
        port = free_port()
        bare = time_to_health([sys.executable, "-c", BARE_APP, str(port)], port, child_env())
        if run:
            results["lollms-server"].append(served)
            results["bare aiohttp"].append(bare)
    return results


def table(results: dict[str, list[float]]) -> str:
    """Markdown table of median / max start-up times and the ratio to the baseline."""
    base = statistics.median(results["bare aiohttp"])
    lines = ["| server | median s | max s | ratio to bare aiohttp |", "|---|---|---|---|"]
    for name, values in results.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {max(values):.3f} | {median / base:.2f} |")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and print (or write) the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    text = table(measure(args.runs))
    print(text)
    if args.write:
        docs = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        marker = "<!-- startup -->"
        body = docs.read_text() if docs.exists() else f"# Benchmarks\n\n{marker}\n{marker}\n"
        head, _, rest = body.partition(marker)
        _, _, tail = rest.partition(marker)
        docs.write_text(f"{head}{marker}\n{text}\n{marker}{tail}")


if __name__ == "__main__":
    main()
