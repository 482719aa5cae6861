"""Tracing overhead: the same proxied chat completion through lollms-server with `[tracing]` off
and on (sample_ratio 1.0, every span exported over OTLP/HTTP to a local receiver), against the
bare aiohttp mock upstream called directly, in one invocation, alternating.

It starts bench/mock_upstream.py and two lollms-server processes (the config of
bench/overhead.py, one with `[tracing] enabled = true` pointed at an OTLP receiver that runs in
this process and decodes every export). Sequential requests (c=1), streamed and not, rotate
over the three targets each round. It reports p50/p95 latency, the CPU milliseconds of each
server process per request and that CPU as a multiple of the bare mock's (the hop ratio of
bench/overhead.py), the spans received, and what the off path (no-op spans, trace headers)
costs per request.
Prints Markdown; `--write` updates the `<!-- tracing -->` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

from common import HERE, clean_env, free_port, machine, pct, spawn, write_section
from overhead import CONFIG, Target, run_scenario
from overhead_report import Scenario, Side

from lollms_server.testing.otlp import OtlpReceiver, otlp_receiver
from lollms_server.trace import end_trace, start_trace
from lollms_server.tracing import outgoing_headers, span

MARKER = "<!-- tracing -->"
OFF, ON, DIRECT = "tracing off", "tracing on (1.0, OTLP)", "direct (bare aiohttp)"
BEFORE = "before tracing (--before)"
TRACING = """
[tracing]
enabled = true
endpoint = "{endpoint}"
sample_ratio = 1.0
service_name = "bench"
"""


def before_tree(ref: str, folder: Path) -> str:
    """The core and lollms-openai of git `ref` unpacked in `folder`; their PYTHONPATH."""
    archive = subprocess.run(
        ["git", "archive", ref, "core", "plugins/lollms-openai"],
        cwd=HERE.parent, capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    folder.mkdir()
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True, timeout=120)
    return f"{folder / 'core'}:{folder / 'plugins' / 'lollms-openai'}"


def measure(
    requests: int, rounds: int, before: str | None
) -> tuple[list[tuple[Scenario, dict[str, Side]]], int]:
    """Start the mock, the servers and the receiver; run the scenarios; rows and span count."""
    rows: list[tuple[Scenario, dict[str, Side]]] = []
    upstream = free_port()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        receiver: OtlpReceiver = stack.enter_context(otlp_receiver())
        mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream)]
        mock_proc = stack.enter_context(
            spawn(mock, clean_env(), f"http://127.0.0.1:{upstream}/health")
        )
        targets = [Target(DIRECT, f"http://127.0.0.1:{upstream}/v1/chat/completions", "mock",
                          mock_proc.pid)]  # fmt: skip
        servers = [(OFF, "", ""), (ON, TRACING.format(endpoint=receiver.endpoint), "")]
        if before:  # the code before tracing, same config: what "off" costs against it
            servers.insert(0, (BEFORE, "", before_tree(before, Path(tmp) / "before-tree")))
        for index, (name, extra, path) in enumerate(servers):
            folder = Path(tmp) / f"server{index}"
            folder.mkdir()
            port = free_port()
            (folder / "lollms.toml").write_text(CONFIG.format(port=port, upstream=upstream) + extra)
            config = str(folder / "lollms.toml")
            cli = [sys.executable, "-m", "lollms_server.cli", "--config", config]
            env = clean_env({"LOLLMS_DATA_DIR": str(folder / "data")})
            if path:
                env["PYTHONPATH"] = path
            health = f"http://127.0.0.1:{port}/api/v1/health"
            server = stack.enter_context(spawn(cli, env, health, log=folder / "server.log"))
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            targets.append(Target(name, url, "mock/mock", server.pid))
        for stream in (False, True):
            scenario = Scenario(1, requests, stream)
            sides = asyncio.run(run_scenario(scenario, targets, mock_proc.pid, rounds))
            rows.append((scenario, sides))
            print(f"done: {scenario.name}", file=sys.stderr)
        time.sleep(6.0)  # the batch processor exports every 5 s: the last batch
        spans = len(receiver.spans)
    return rows, spans


def off_path_us() -> float:
    """Microseconds that tracing adds to one proxied chat when off: inside a request's trace
    (no tracer), the six `tracing.span()` blocks a chat opens and one `outgoing_headers()`."""
    _trace, token = start_trace(None)
    attributes = {"lollms.instance": "mock", "lollms.model": "mock"}

    def one_request() -> None:
        for name in ("auth", "queue.wait", "binding.generate", "POST /chat/completions", "a", "b"):
            with span(name, attributes):
                pass
        outgoing_headers()

    try:
        runs = 20_000
        return min(timeit.repeat(one_request, number=runs, repeat=5)) / runs * 1e6
    finally:
        end_trace(token)


def table(rows: list[tuple[Scenario, dict[str, Side]]], spans: int, off_us: float) -> str:
    """The Markdown of one run."""
    lines = [
        f"Run: {machine()}. c=1, requests per target: {rows[0][1][DIRECT].count} per shape.",
        "",
        "| shape | target | p50 ms | p95 ms | added p50 vs direct ms | server CPU ms/request "
        "| CPU vs bare hop | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, sides in rows:
        direct = sides[DIRECT]
        bare_cpu = direct.cpu_ms
        for name in (DIRECT, BEFORE, OFF, ON):
            if name not in sides:
                continue
            side = sides[name]
            added = pct(side.latencies, 50) - pct(direct.latencies, 50)
            ratio = side.cpu_ms / bare_cpu if bare_cpu else float("nan")
            lines.append(
                f"| {scenario.name} | {name} | {pct(side.latencies, 50):.2f} "
                f"| {pct(side.latencies, 95):.2f} | {added:+.2f} | {side.cpu_ms:.2f} "
                f"| {ratio:.2f}x | {len(side.errors)} |"
            )
    off = {s.name: sides[OFF] for s, sides in rows}
    on = {s.name: sides[ON] for s, sides in rows}
    deltas = ", ".join(
        f"{name}: {on[name].cpu_ms - off[name].cpu_ms:+.2f} ms CPU, "
        f"{pct(on[name].latencies, 50) - pct(off[name].latencies, 50):+.2f} ms p50"
        for name in off
    )
    if all(BEFORE in sides for _, sides in rows):
        before = {s.name: sides[BEFORE] for s, sides in rows}
        deltas += ". Off vs the code before tracing: " + ", ".join(
            f"{name}: {off[name].cpu_ms - before[name].cpu_ms:+.2f} ms CPU, "
            f"{pct(off[name].latencies, 50) - pct(before[name].latencies, 50):+.2f} ms p50"
            for name in off
        )
    lines += [
        "",
        f"Tracing on vs off, per request: {deltas}. Spans received by the OTLP receiver: {spans}.",
        f"Off, what tracing adds to one proxied chat (six no-op `tracing.span()` blocks and the "
        f"outgoing trace headers, timed in-process) is {off_us:.1f} µs of CPU, "
        f"{off_us / 10 / off[rows[0][0].name].cpu_ms:.2f} % of the server's CPU per request "
        "above: below what the alternating runs can resolve; nothing of OpenTelemetry is "
        "imported (tests/test_tracing.py).",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and print (or write) the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="per target and shape")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the targets")
    parser.add_argument("--before", help="also run this git ref's core (the code before tracing)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rows, spans = measure(args.requests, args.rounds, args.before)
    text = table(rows, spans, off_path_us())
    print(text)
    if args.write:
        write_section(MARKER, text, "Tracing overhead (bench/tracing.py)")


if __name__ == "__main__":
    main()
