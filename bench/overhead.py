"""Proxy-overhead benchmark: a mock OpenAI upstream called directly, through a bare aiohttp
pass-through proxy, through lollms-server and through the LiteLLM proxy, in one invocation.

It starts bench/mock_upstream.py, bench/bare_proxy.py (the reference hop: one aiohttp app
relaying bytes), a real lollms-server on its default config (`openai` instance `mock` pointed at
the mock with `max_concurrent = 128` so c=100 is not queued; everything else as shipped: auth,
validation, scheduler, metrics, the request log at `info` and the audit log on) and, unless
`--no-litellm`, the LiteLLM proxy (bench/litellm_proxy.py: its own venv, one worker, offline).
An aiohttp client in this process drives `POST /v1/chat/completions` at each target in turn,
rotating the order every round. It reports latency, time to first token, throughput, the CPU
seconds of each proxy's process tree per request (psutil, before/after each phase), start-up
time and RSS, and each figure of lollms-server as a ratio to the bare hop's. Prints Markdown;
`--write` updates the `<!-- overhead -->` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import litellm_proxy
from common import HERE, clean_env, cpu_seconds, free_port, rss_mb, spawn, write_section
from overhead_report import (
    BARE,
    DIRECT,
    LITELLM,
    LOLLMS,
    Report,
    Scenario,
    Side,
    bare_ratios,
    repeat_lines,
    table,
)  # fmt: skip

SECTIONS = {
    "litellm": ("<!-- overhead -->", "Proxy overhead, against LiteLLM"),
    "default": ("<!-- overhead-default -->", "Proxy overhead on the default config"),
}
MESSAGES = [{"role": "user", "content": "Say something short."}]
REQUEST_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 300.0
OVERHEAD_HEADERS = ("X-Lollms-Overhead-Ms", "x-litellm-overhead-duration-ms")
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}

[bindings.mock]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
max_concurrent = 128

[defaults]
ttt = "mock"
"""


@dataclass(frozen=True)
class Target:
    """Where one side sends its requests, and the process whose CPU it costs."""

    name: str
    url: str
    model: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)


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
    for name in OVERHEAD_HEADERS:
        if name in response.headers:
            side.overheads.append(float(response.headers[name]) / 1000)


async def drive(
    session: aiohttp.ClientSession,
    target: Target,
    stream: bool,
    count: int,
    concurrency: int,
    side: Side,
) -> None:
    """`count` requests from `concurrency` workers, bounded by ROUND_TIMEOUT_S."""
    remaining = [count]
    body = json.dumps({"model": target.model, "messages": MESSAGES, "stream": stream}).encode()
    headers = {"Content-Type": "application/json", **target.headers}

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                await one_request(session, target.url, body, headers, side)
            except (aiohttp.ClientError, TimeoutError) as exc:
                side.errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), ROUND_TIMEOUT_S)


async def run_scenario(
    scenario: Scenario, targets: list[Target], mock_pid: int, rounds: int
) -> dict[str, Side]:
    """Warm every target up, then run `rounds` rounds, rotating the order each round."""
    sides = {target.name: Side() for target in targets}
    per_round = max(1, scenario.requests // rounds)
    connector = aiohttp.TCPConnector(limit=scenario.concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for target in targets:
            warm = Side()
            await drive(session, target, scenario.stream, 20, 4, warm)
            if warm.errors:
                raise RuntimeError(f"{target.name} warm-up failed: {warm.errors[:3]}")
        for index in range(rounds):
            shift = index % len(targets)
            for target in targets[shift:] + targets[:shift]:
                side = sides[target.name]
                cpu = cpu_seconds(target.pid), cpu_seconds(mock_pid)
                started = time.perf_counter()
                await drive(session, target, scenario.stream, per_round, scenario.concurrency, side)
                side.wall += time.perf_counter() - started
                side.cpu += cpu_seconds(target.pid) - cpu[0]
                side.upstream_cpu += cpu_seconds(mock_pid) - cpu[1]
    return sides


def idle_cpu(pid: int, seconds: float = 2.0) -> float:
    """CPU percent of one core that process `pid` (and children) uses while nothing is sent."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def create_key(cli: list[str], env: dict[str, str]) -> str:
    """A user-role API key made with the lollms-server CLI."""
    return subprocess.run(
        [*cli, "keys", "create", "--name", "bench", "--role", "user"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def measure(scenarios: list[Scenario], rounds: int, litellm_venv: Path | None) -> Report:
    """Start the mock, lollms-server and LiteLLM, run every scenario, collect the report."""
    report = Report()
    began = time.perf_counter()
    ports = {name: free_port() for name in (DIRECT, BARE, LOLLMS, LITELLM)}
    upstream = ports[DIRECT]
    if litellm_venv is not None:
        report.litellm_version = litellm_proxy.ensure_installed(litellm_venv)
    mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream)]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        config = folder / "lollms.toml"
        config.write_text(CONFIG.format(port=ports[LOLLMS], upstream=upstream))
        env = clean_env({"LOLLMS_DATA_DIR": str(folder / "data")})
        cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
        key = create_key(cli, env)
        mock_proc = stack.enter_context(
            spawn(mock, clean_env(), f"http://127.0.0.1:{upstream}/health")
        )
        bare_cmd = [sys.executable, str(HERE / "bare_proxy.py"), str(ports[BARE])]
        bare = stack.enter_context(
            spawn([*bare_cmd, f"http://127.0.0.1:{upstream}"], clean_env(),
                  f"http://127.0.0.1:{ports[BARE]}/health")
        )  # fmt: skip
        health = f"http://127.0.0.1:{ports[LOLLMS]}/api/v1/health"
        server = stack.enter_context(spawn(cli, env, health, log=folder / "lollms.log"))
        pids = {DIRECT: mock_proc.pid, BARE: bare.pid, LOLLMS: server.pid}
        report.startup_s = {
            DIRECT: mock_proc.startup_s,
            BARE: bare.startup_s,
            LOLLMS: server.startup_s,
        }
        if litellm_venv is not None:
            command, extra = litellm_proxy.prepare(folder, litellm_venv, ports[LITELLM], upstream)
            url = f"http://127.0.0.1:{ports[LITELLM]}{litellm_proxy.HEALTH}"
            peer = stack.enter_context(
                spawn(command, clean_env(extra), url, limit=120, cwd=tmp, log=folder / "lt.log")
            )
            pids[LITELLM] = peer.pid
            report.startup_s[LITELLM] = peer.startup_s
        time.sleep(1.0)
        for name, pid in pids.items():
            report.rss_idle_mb[name] = rss_mb(pid)
            report.idle_cpu_pct[name] = idle_cpu(pid)
        base = "http://127.0.0.1:{}/v1/chat/completions"
        lt_auth = {"Authorization": f"Bearer {litellm_proxy.MASTER_KEY}"}
        user = {"Host": "bench.example.com", "Authorization": f"Bearer {key}"}
        for scenario in scenarios:
            targets = [
                Target(DIRECT, base.format(upstream), "mock", pids[DIRECT]),
                Target(BARE, base.format(ports[BARE]), "mock", pids[BARE]),
                Target(LOLLMS, base.format(ports[LOLLMS]), "mock/mock", pids[LOLLMS],
                       user if scenario.key else {}),
            ]  # fmt: skip
            if LITELLM in pids and not scenario.key:
                url = base.format(ports[LITELLM])
                targets.append(Target(LITELLM, url, litellm_proxy.MODEL, pids[LITELLM], lt_auth))
            sides = asyncio.run(run_scenario(scenario, targets, pids[DIRECT], rounds))
            report.rows.append((scenario, sides))
            print(f"done: {scenario.name}", file=sys.stderr)
        for name, pid in pids.items():
            report.rss_after_mb[name] = rss_mb(pid)
    report.wall_s = time.perf_counter() - began
    return report


def main() -> None:
    """Run the benchmark and print (or write) the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the targets")
    parser.add_argument("--no-c100", action="store_true", help="skip the concurrency-100 rows")
    parser.add_argument("--c1-only", action="store_true", help="only the concurrency-1 rows")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument("--litellm-venv", type=Path, default=litellm_proxy.DEFAULT_VENV)
    parser.add_argument("--repeat", type=int, default=1, help="whole runs, fresh processes each")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--ratios-json", type=Path, help="append each run's issue-15 figures")
    parser.add_argument(
        "--section",
        choices=tuple(SECTIONS),
        default="litellm",
        help="which section --write replaces (default: the LiteLLM comparison)",
    )
    args = parser.parse_args()
    shapes = [(1, 300, False, False), (1, 300, True, False), (1, 300, False, True)]
    if not args.c1_only:
        shapes += [(10, 1000, False, False), (10, 1000, True, False), (10, 1000, False, True)]
    if not (args.no_c100 or args.c1_only):
        shapes += [(100, 1000, False, False), (100, 1000, True, False)]
    scenarios = [
        Scenario(c, max(args.rounds, int(n * args.scale)), stream, key)
        for c, n, stream, key in shapes
    ]
    venv = None if args.no_litellm else args.litellm_venv
    reports = []
    for index in range(args.repeat):
        reports.append(measure(scenarios, args.rounds, venv))
        print(f"done: run {index + 1} of {args.repeat}", file=sys.stderr)
        if args.ratios_json is not None:
            with args.ratios_json.open("a") as out:
                out.write(json.dumps(bare_ratios(reports[-1])) + "\n")
    if len(reports) == 1:
        text = table(reports[0])
    else:
        runs = [f"### Run {i}\n\n{table(report)}" for i, report in enumerate(reports, 1)]
        text = "\n\n".join(["\n".join(repeat_lines(reports)), *runs])
    print(text)
    if args.write:
        marker, title = SECTIONS[args.section]
        write_section(marker, text, title)


if __name__ == "__main__":
    main()
