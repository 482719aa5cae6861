"""Proxy-overhead benchmark: a mock OpenAI upstream called directly and through lollms-server.

One invocation starts bench/mock_upstream.py and a real lollms-server (`openai` instance `mock`
pointed at the mock with `max_concurrent = 128` so c=100 is not queued; defaults otherwise: auth,
validation, scheduler, metrics and audit on; `log_level = "warning"`), then drives
`POST /v1/chat/completions` from an aiohttp client in this process, alternating direct and
proxied rounds per scenario. It reports latency, time to first token, throughput, the
lollms-server process's CPU time per request, its RSS and start-up time. Prints Markdown;
`--write` updates the `<!-- overhead -->` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
MARKER = "<!-- overhead -->"
MESSAGES = [{"role": "user", "content": "Say something short."}]
REQUEST_TIMEOUT_S = 30.0
ROUND_TIMEOUT_S = 120.0
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
log_level = "warning"

[bindings.mock]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
max_concurrent = 128

[defaults]
ttt = "mock"
"""


@dataclass(frozen=True)
class Scenario:
    """One load shape: concurrency, requests per side, streaming, key auth."""

    concurrency: int
    requests: int
    stream: bool
    key: bool = False

    @property
    def name(self) -> str:
        """Short label for the table."""
        kind = "stream" if self.stream else "non-stream"
        auth = ", user key" if self.key else ""
        return f"c={self.concurrency} {kind}{auth}"


@dataclass
class Side:
    """Measurements of one side (direct or proxied) of a scenario, summed over rounds."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    wall: float = 0.0
    server_cpu: float = 0.0
    upstream_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Requests per second over the rounds' wall time."""
        return len(self.latencies) / self.wall if self.wall else 0.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(process: subprocess.Popen[bytes], url: str, started: float) -> float:
    """Seconds from `started` until `url` answers 200; raises if the process dies or 30 s pass."""
    while time.perf_counter() - started < 30:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"{url}: process exited\n{err}") from None
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within 30 s")


@contextmanager
def spawn(command: list[str], env: dict[str, str], health: str) -> Iterator[tuple[int, float]]:
    """Run `command` until the block ends; yields its pid and its time to a healthy `health`."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process.pid, wait_healthy(process, health, started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by process `pid`."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MiB."""
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def has_content(line: bytes) -> bool:
    """Whether an SSE `data:` line carries a non-empty text delta."""
    if not line.startswith(b"data: {"):
        return False
    choices = json.loads(line[6:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


async def one_request(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str], side: Side
) -> None:
    """Send one chat completion and record its latency, TTFT and overhead header on `side`."""
    started = time.perf_counter()
    stream = b'"stream": true' in payload
    async with session.post(url, data=payload, headers=headers) as response:
        if response.status != 200:
            side.errors.append(f"{response.status}: {(await response.text())[:200]}")
            return
        first: float | None = None
        done = False
        if stream:
            async for line in response.content:
                if first is None and has_content(line):
                    first = time.perf_counter() - started
                done = done or line.startswith(b"data: [DONE]")
        else:
            done = "choices" in await response.json()
        if not done:
            side.errors.append("incomplete response")
            return
    side.latencies.append(time.perf_counter() - started)
    if first is not None:
        side.ttfts.append(first)
    overhead = response.headers.get("X-Lollms-Overhead-Ms")
    if overhead is not None:
        side.overheads.append(float(overhead) / 1000)


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    headers: dict[str, str],
    count: int,
    concurrency: int,
    side: Side,
) -> None:
    """`count` requests from `concurrency` workers, bounded by ROUND_TIMEOUT_S."""
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                await one_request(session, url, payload, headers, side)
            except (aiohttp.ClientError, TimeoutError) as exc:
                side.errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), ROUND_TIMEOUT_S)


def payload(model: str, stream: bool) -> bytes:
    """The request body."""
    return json.dumps({"model": model, "messages": MESSAGES, "stream": stream}).encode()


async def run_scenario(
    scenario: Scenario, ports: tuple[int, int], pids: tuple[int, int], key: str, rounds: int
) -> tuple[Side, Side]:
    """Alternate direct and proxied rounds (order flipped each round); returns both sides."""
    upstream, server = ports
    server_pid, upstream_pid = pids
    sides = {"direct": Side(), "proxied": Side()}
    targets = {
        "direct": (f"http://127.0.0.1:{upstream}/v1/chat/completions", "mock", {}),
        "proxied": (
            f"http://127.0.0.1:{server}/v1/chat/completions",
            "mock/mock",
            {"Host": "bench.example.com", "Authorization": f"Bearer {key}"} if scenario.key else {},
        ),
    }
    per_round = max(1, scenario.requests // rounds)
    connector = aiohttp.TCPConnector(limit=scenario.concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for name, (url, model, headers) in targets.items():
            headers = {"Content-Type": "application/json", **headers}
            warm = Side()
            await drive(session, url, payload(model, scenario.stream), headers, 20, 4, warm)
            if warm.errors:
                raise RuntimeError(f"{name} warm-up failed: {warm.errors[:3]}")
        for index in range(rounds):
            order = ["direct", "proxied"] if index % 2 == 0 else ["proxied", "direct"]
            for name in order:
                url, model, extra = targets[name]
                headers = {"Content-Type": "application/json", **extra}
                side = sides[name]
                cpu = cpu_seconds(server_pid), cpu_seconds(upstream_pid)
                started = time.perf_counter()
                body = payload(model, scenario.stream)
                await drive(session, url, body, headers, per_round, scenario.concurrency, side)
                side.wall += time.perf_counter() - started
                side.server_cpu += cpu_seconds(server_pid) - cpu[0]
                side.upstream_cpu += cpu_seconds(upstream_pid) - cpu[1]
    return sides["direct"], sides["proxied"]


def pct(values: list[float], q: int) -> float:
    """The q-th percentile of `values` (seconds) in milliseconds (nan when empty)."""
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


@dataclass
class Report:
    """Everything measured in one invocation."""

    rows: list[tuple[Scenario, Side, Side]] = field(default_factory=list)
    startup_s: float = 0.0
    upstream_startup_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_after_mb: float = 0.0
    upstream_rss_mb: float = 0.0
    wall_s: float = 0.0


def measure(scenarios: list[Scenario], rounds: int) -> Report:
    """Start the mock and lollms-server, run every scenario, collect the report."""
    report = Report()
    began = time.perf_counter()
    upstream_port, server_port = free_port(), free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream_port)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lollms.toml"
        config.write_text(CONFIG.format(port=server_port, upstream=upstream_port))
        env = {**base_env, "LOLLMS_DATA_DIR": str(Path(tmp) / "data")}
        cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
        key = subprocess.run(
            [*cli, "keys", "create", "--name", "bench", "--role", "user"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        with spawn(mock, base_env, f"http://127.0.0.1:{upstream_port}/health") as (mpid, mstart):
            report.upstream_startup_s = mstart
            server_health = f"http://127.0.0.1:{server_port}/api/v1/health"
            with spawn(cli, env, server_health) as (spid, startup):
                report.startup_s = startup
                time.sleep(1.0)
                report.rss_idle_mb = rss_mb(spid)
                for scenario in scenarios:
                    direct, proxied = asyncio.run(
                        run_scenario(
                            scenario, (upstream_port, server_port), (spid, mpid), key, rounds
                        )
                    )
                    report.rows.append((scenario, direct, proxied))
                    print(f"done: {scenario.name}", file=sys.stderr)
                report.rss_after_mb = rss_mb(spid)
                report.upstream_rss_mb = rss_mb(mpid)
    report.wall_s = time.perf_counter() - began
    return report


def table(report: Report) -> str:
    """Markdown tables: per-scenario latency/CPU, process figures, targets."""
    lines = [
        "| scenario | requests | p50 direct ms | p50 proxied ms | added p50 ms | p95 direct ms "
        "| p95 proxied ms | added p95 ms | throughput ratio | added TTFT p50 ms "
        "| server CPU ms/req | mock CPU ms/req | X-Lollms-Overhead-Ms p50 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, direct, proxied in report.rows:
        count = len(proxied.latencies) + len(proxied.errors)
        ttft = pct(proxied.ttfts, 50) - pct(direct.ttfts, 50) if scenario.stream else None
        ratio = proxied.throughput / direct.throughput if direct.throughput else float("nan")
        mock_cpu = direct.upstream_cpu / max(1, len(direct.latencies)) * 1000
        lines.append(
            f"| {scenario.name} | {count} | {pct(direct.latencies, 50):.2f} "
            f"| {pct(proxied.latencies, 50):.2f} "
            f"| {pct(proxied.latencies, 50) - pct(direct.latencies, 50):+.2f} "
            f"| {pct(direct.latencies, 95):.2f} | {pct(proxied.latencies, 95):.2f} "
            f"| {pct(proxied.latencies, 95) - pct(direct.latencies, 95):+.2f} | {ratio:.2f} "
            f"| {'' if ttft is None else f'{ttft:+.2f}'} "
            f"| {proxied.server_cpu / max(1, count) * 1000:.2f} | {mock_cpu:.2f} "
            f"| {pct(proxied.overheads, 50):.2f} | {len(direct.errors) + len(proxied.errors)} |"
        )
    lines += [
        "",
        "| lollms-server process | value |",
        "|---|---|",
        f"| start-up to first health answer | {report.startup_s:.3f} s "
        f"(mock upstream, bare aiohttp: {report.upstream_startup_s:.3f} s) |",
        f"| RSS idle (1 s after start-up) | {report.rss_idle_mb:.1f} MiB |",
        f"| RSS after the load | {report.rss_after_mb:.1f} MiB "
        f"(mock upstream: {report.upstream_rss_mb:.1f} MiB) |",
        f"| benchmark wall time | {report.wall_s:.0f} s |",
        "",
        *targets(report),
    ]
    return "\n".join(lines)


def targets(report: Report) -> list[str]:
    """The issue's targets, each marked met or not met."""
    rows = {s.name: (s, d, p) for s, d, p in report.rows}
    checks: list[tuple[str, float, float, str]] = []
    for scenario, _direct, proxied in report.rows:
        count = len(proxied.latencies) + len(proxied.errors)
        cpu = proxied.server_cpu / max(1, count) * 1000
        limit = 3.5 if scenario.stream else 1.3
        checks.append((f"CPU per request, {scenario.name}", cpu, limit, "ms"))
    if "c=1 non-stream" in rows:
        _, direct, proxied = rows["c=1 non-stream"]
        added = pct(proxied.latencies, 50) - pct(direct.latencies, 50)
        checks.append(("added p50 at c=1 (non-stream)", added, 1.0, "ms"))
    if "c=1 stream" in rows:
        _, direct, proxied = rows["c=1 stream"]
        added = pct(proxied.ttfts, 50) - pct(direct.ttfts, 50)
        checks.append(("TTFT overhead p50 at c=1", added, 1.0, "ms"))
    checks.append(("start-up", report.startup_s, 1.0, "s"))
    checks.append(("idle RSS", report.rss_idle_mb, 80.0, "MiB"))
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, limit, unit in checks:
        met = "yes" if value <= limit else "**no**"
        lines.append(f"| {name} | {value:.2f} {unit} | ≤ {limit:g} {unit} | {met} |")
    return lines


def write(text: str) -> None:
    """Replace the marked section of docs/benchmarks.md (appending it when missing)."""
    body = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if MARKER not in body:
        body = f"{body.rstrip()}\n\n## Proxy overhead\n\n{MARKER}\n{MARKER}\n"
    head, _, rest = body.partition(MARKER)
    _, _, tail = rest.partition(MARKER)
    DOCS.write_text(f"{head}{MARKER}\n{text}\n{MARKER}{tail}")


def main() -> None:
    """Run the benchmark and print (or write) the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--rounds", type=int, default=4, help="direct/proxied alternations")
    parser.add_argument("--no-c100", action="store_true", help="skip the concurrency-100 rows")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    shapes = [(1, 300, False, False), (1, 300, True, False), (1, 300, False, True)]
    shapes += [(10, 1000, False, False), (10, 1000, True, False), (10, 1000, False, True)]
    if not args.no_c100:
        shapes += [(100, 1000, False, False), (100, 1000, True, False)]
    scenarios = [
        Scenario(c, max(args.rounds, int(n * args.scale)), stream, key)
        for c, n, stream, key in shapes
    ]
    text = table(measure(scenarios, args.rounds))
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    main()
