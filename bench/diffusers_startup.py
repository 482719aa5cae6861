"""Start-up cost of the lollms-diffusers plugin: time to the first answered health request.

Method: three server configurations, alternated run by run in one invocation, each a fresh
`lollms-server` process with a fresh data dir, timed from spawn to the first 200 from
`GET /api/v1/health` (as bench/startup.py does):

- `without the plugin`: the `diffusers` entry point is filtered out of the plugin discovery
  (the same launcher as the other two, so launcher overhead is identical); echo only;
- `plugin installed`: the plugin is discovered and registered; echo only in the config;
- `plugin + instance`: the plugin plus a configured `diffusers` instance (the binding is built,
  started, and given the data dir; its models folders exist).

Installing and using the plugin must not slow start-up by more than 0.3 s (median of
`plugin + instance` minus median of `without the plugin`). Each process also records which of
torch/diffusers/transformers it imported by the time it exits (expected: none). Needs
lollms-server and lollms-diffusers installed (torch need not be). Prints a Markdown table;
`--write` updates the "Start-up with lollms-diffusers" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LIMIT_S = 0.3
HEAVY = ("torch", "diffusers", "transformers")
LAUNCHER = """
import atexit, json, os, sys
from importlib import metadata
import lollms_server.plugins as plugins

if os.environ.get("BENCH_HIDE_DIFFUSERS") == "1":
    found = metadata.entry_points
    def entry_points(**kw):
        return [e for e in found(**kw) if e.name != "diffusers"]
    plugins.metadata = type("M", (), {"entry_points": staticmethod(entry_points)})

def report():
    heavy = [m for m in json.loads(os.environ["BENCH_HEAVY"]) if m in sys.modules]
    with open(os.environ["BENCH_MODULES"], "w") as out:
        json.dump({"heavy": heavy, "plugins": sorted(plugins.load_plugins().infos)}, out)

atexit.register(report)
from lollms_server.cli import main
sys.exit(main(["serve"]))
"""
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{data}"

[bindings.echo]
type = "echo"
{instance}
[defaults]
ttt = "echo"
"""
INSTANCE = """
[bindings.diffusers]
type = "diffusers"
device = "cpu"
"""
CASES = {
    "without the plugin": (True, False),
    "plugin installed": (False, False),
    "plugin + instance": (False, True),
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(hide_plugin: bool, with_instance: bool) -> tuple[float, list[str]]:
    """Seconds to the first health answer, and the heavy modules the process imported."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        port = free_port()
        config = data / "lollms.toml"
        instance = INSTANCE if with_instance else ""
        config.write_text(CONFIG.format(port=port, data=data.as_posix(), instance=instance))
        modules = data / "modules.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
        env.update(
            LOLLMS_CONFIG=str(config),
            BENCH_HIDE_DIFFUSERS="1" if hide_plugin else "0",
            BENCH_HEAVY=json.dumps(HEAVY),
            BENCH_MODULES=str(modules),
        )
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            elapsed = wait_for_health(process, port, started)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        report = json.loads(modules.read_text())
        expected = not hide_plugin
        if ("diffusers" in report["plugins"]) != expected:
            raise RuntimeError(f"plugin discovery was not as intended: {report['plugins']}")
        return elapsed, report["heavy"]


def wait_for_health(process: subprocess.Popen[bytes], port: int, started: float) -> float:
    """Poll /api/v1/health until it answers; seconds since `started`."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                return time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"the server exited: {error}") from None
            time.sleep(0.005)


def measure(runs: int) -> tuple[dict[str, list[float]], set[str]]:
    """Alternate the three cases `runs` times each (after one unmeasured warm-up round)."""
    results: dict[str, list[float]] = {name: [] for name in CASES}
    heavy: set[str] = set()
    for round_index in range(runs + 1):
        for name, (hide, instance) in CASES.items():
            seconds, imported = run_once(hide, instance)
            heavy.update(imported)
            if round_index:
                results[name].append(seconds)
    return results, heavy


def table(results: dict[str, list[float]], heavy: set[str]) -> str:
    """Markdown table of medians and the cost over `without the plugin`."""
    base = statistics.median(results["without the plugin"])
    floor = min(results["without the plugin"])
    lines = [
        "| server | median s | min s | max s | median cost s | min cost s |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in results.items():
        median, low = statistics.median(values), min(values)
        lines.append(
            f"| {name} | {median:.3f} | {low:.3f} | {max(values):.3f} "
            f"| {median - base:+.3f} | {low - floor:+.3f} |"
        )
    cost = statistics.median(results["plugin + instance"]) - base
    verdict = "within" if cost <= LIMIT_S else "OVER"
    imported = ", ".join(sorted(heavy)) or "none"
    lines += [
        "",
        f"Cost of the plugin with an instance: {cost:+.3f} s ({verdict} the {LIMIT_S} s budget); "
        f"heavy modules imported by the servers: {imported}.",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    """Replace (or append) the section between the markers in docs/benchmarks.md."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    marker = "<!-- diffusers-startup -->"
    body = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if marker not in body:
        body = body.rstrip("\n") + f"\n\n## Start-up with lollms-diffusers\n\n{marker}\n{marker}\n"
    head, _, rest = body.partition(marker)
    _, _, tail = rest.partition(marker)
    docs.write_text(f"{head}{marker}\n{text}\n{marker}{tail}")


def main() -> None:
    """Run the benchmark and print (or write) the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    results, heavy = measure(args.runs)
    text = table(results, heavy)
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    main()
