"""One gateway hop: what a lollms-server in front of another (the `lollms` binding) costs.

The same short echo generation, sequentially, straight to a node and through a gateway in
front of it: p50/p95 of each and the gateway's CPU per request. (Throughput with two nodes
against one: bench/fleet_throughput.py.)

`python bench/remote_hop.py [--requests 200] [--write]` (needs lollms-remote installed);
`--write` puts the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common import clean_env, cpu_seconds, free_port, machine, pct, spawn, write_section

MARKER = "<!-- remote_hop -->"
ECHO = '[bindings.echo]\ntype = "echo"\ndelay_ms = 0\n'


def start(stack: ExitStack, folder: Path, body: str) -> tuple[str, int]:
    """A lollms-server with `body` as its config (after [server]); its URL and pid."""
    port = free_port()
    config = folder / f"lollms-{port}.toml"
    server = f'[server]\nhost = "127.0.0.1"\nport = {port}\nlog_level = "warning"\n\n'
    config.write_text(server + body)
    env = clean_env({"LOLLMS_DATA_DIR": str(folder / f"data-{port}")})
    cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
    url = f"http://127.0.0.1:{port}"
    spawned = stack.enter_context(
        spawn(cli, env, f"{url}/api/v1/health", limit=120, log=folder / f"{port}.log")
    )
    return url, spawned.pid


def gateway_body(nodes: list[str], model: str) -> str:
    """Config of a gateway with one `lollms` instance per node and a route `bench`."""
    lines = []
    for index, url in enumerate(nodes, 1):
        lines += [f"[bindings.n{index}]", 'type = "lollms"', f'base_url = "{url}"', ""]
    targets = ", ".join(f'"n{i}/{model}"' for i in range(1, len(nodes) + 1))
    lines += ["[routes]", f'"bench" = {{targets = [{targets}], strategy = "least-busy"}}']
    return "\n".join(lines) + "\n"


def generate(url: str, payload: dict[str, Any]) -> float:
    """One whole generation; its latency in seconds."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{url}/api/v1/generate", data=data, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as answer:
        answer.read()
    return time.perf_counter() - started


def body(model: str | None, binding: str | None = None, max_tokens: int = 8) -> dict[str, Any]:
    """A short text generation."""
    return {
        "input_data": [{"type": "text", "data": "one two three four five six seven eight"}],
        "binding_name": binding,
        "model_name": model,
        "parameters": {"max_tokens": max_tokens, "temperature": 0},
    }


def hop(folder: Path, requests: int) -> dict[str, float]:
    """Latency straight to an echo node and through a gateway; the gateway's CPU per request."""
    with ExitStack() as stack:
        node, _ = start(stack, folder, ECHO)
        gateway, gateway_pid = start(stack, folder, gateway_body([node], "echo/echo"))
        for _ in range(20):  # warm both paths
            generate(node, body("echo", "echo"))
            generate(gateway, body("echo/echo", "n1"))
        direct = [generate(node, body("echo", "echo")) for _ in range(requests)]
        cpu_before = cpu_seconds(gateway_pid)
        through = [generate(gateway, body("echo/echo", "n1")) for _ in range(requests)]
        cpu = (cpu_seconds(gateway_pid) - cpu_before) / requests
    return {
        "direct_p50": pct(direct, 50),
        "direct_p95": pct(direct, 95),
        "gateway_p50": pct(through, 50),
        "gateway_p95": pct(through, 95),
        "gateway_cpu_ms": cpu * 1000,
    }


def main() -> None:
    """Measure, print, and with --write put the table in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        latency = hop(folder, args.requests)
    text = "\n".join(
        [
            f"Run: {machine()}.",
            "",
            "| | p50 ms | p95 ms |",
            "|---|---|---|",
            f"| echo node, direct | {latency['direct_p50']:.2f} | {latency['direct_p95']:.2f} |",
            f"| echo node through a gateway | {latency['gateway_p50']:.2f} | "
            f"{latency['gateway_p95']:.2f} |",
            "",
            f"Added by the hop: {latency['gateway_p50'] - latency['direct_p50']:.2f} ms at p50; "
            f"the gateway's CPU per request: {latency['gateway_cpu_ms']:.2f} ms "
            f"({args.requests} sequential requests).",
        ]
    )
    print(text)
    if args.write:
        write_section(MARKER, text, "One gateway hop (bench/remote_hop.py)")


if __name__ == "__main__":
    main()
