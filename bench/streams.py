"""1,000 concurrent open streams through one lollms-server process, and the same load direct.

Starts bench/mock_upstream.py with `--chunk-delay` (20 chunks, so each stream stays open about
19 x delay seconds) and a lollms-server whose `openai` instance allows the load
(`max_concurrent` and `[resources] queue_size` above the stream count; rate limits are off by
default). Then it opens every stream at once from one aiohttp client, first straight to the mock
(baseline), then through lollms-server, and counts errors (by message), the peak number of
streams open at the same time (first content chunk received, not finished), the server's peak
RSS, open file descriptors and CPU. The open-file limit is raised to its hard limit first (the
server inherits it). Prints Markdown; `--write` updates `<!-- streams -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
from common import (
    HERE,
    clean_env,
    cpu_seconds,
    free_port,
    machine,
    pct,
    raise_fd_limit,
    rss_mb,
    spawn,
    write_section,
)

MARKER = "<!-- streams -->"
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
log_level = "warning"

[bindings.mock]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
max_concurrent = {streams}

[defaults]
ttt = "mock"

[resources]
queue_size = {streams}
"""


@dataclass
class Run:
    """One burst of streams against one target."""

    name: str
    streams: int
    ttfts: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    peak_open: int = 0
    all_open_s: float | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_fds: int = 0


class Sampler(threading.Thread):
    """Samples a process's RSS and open file descriptors every 0.1 s until stopped."""

    def __init__(self, pid: int, run: Run) -> None:
        super().__init__(daemon=True)
        self.pid, self.run_ = pid, run
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until `done` is set."""
        process = psutil.Process(self.pid)
        while not self.done.wait(0.1):
            self.run_.peak_rss_mb = max(self.run_.peak_rss_mb, rss_mb(self.pid))
            self.run_.peak_fds = max(self.run_.peak_fds, process.num_fds())


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, run: Run, began: float
) -> None:
    """One streamed chat completion, read to `[DONE]`; failures are counted by message."""
    started = time.perf_counter()
    opened = False
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            if r.status != 200:
                run.errors[f"HTTP {r.status}: {(await r.text())[:300]}"] += 1
                return
            done = False
            async for line in r.content:
                if not opened and line.startswith(b"data: {") and b'"content"' in line:
                    opened = True
                    run.ttfts.append(time.perf_counter() - started)
                    run.open_now += 1
                    run.peak_open = max(run.peak_open, run.open_now)
                    if run.peak_open == run.streams:
                        run.all_open_s = time.perf_counter() - began
                elif line.startswith(b"data: {") and b'"error"' in line:
                    run.errors[f"error event: {line[6:306].decode(errors='replace')}"] += 1
                    return
                done = done or line.startswith(b"data: [DONE]")
            if not done:
                run.errors["stream ended without [DONE]"] += 1
                return
        run.durations.append(time.perf_counter() - started)
    except (aiohttp.ClientError, TimeoutError) as exc:
        run.errors[f"{type(exc).__name__}: {exc}"[:300]] += 1
    finally:
        if opened:
            run.open_now -= 1


async def burst(run: Run, url: str, model: str, pid: int) -> None:
    """Open `run.streams` streams at once and wait for all of them."""
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=300, sock_connect=60)
    sampler = Sampler(pid, run)
    run.rss_before_mb = rss_mb(pid)
    sampler.start()
    cpu = cpu_seconds(pid)
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [one_stream(session, url, body.encode(), run, began) for _ in range(run.streams)]
        await asyncio.gather(*tasks)
    run.wall_s = time.perf_counter() - began
    run.cpu_s = cpu_seconds(pid) - cpu
    sampler.done.set()
    sampler.join()


def measure(streams: int, delay: float) -> tuple[list[Run], int, float]:
    """Direct burst, then the same burst through lollms-server; returns runs, fd limit, start-up."""
    limit = raise_fd_limit()
    upstream, port = free_port(), free_port()
    mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream)]
    mock += ["--chunk-delay", str(delay)]
    runs = [Run("direct to the mock", streams), Run("through lollms-server", streams)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lollms.toml"
        config.write_text(CONFIG.format(port=port, upstream=upstream, streams=streams))
        env = clean_env({"LOLLMS_DATA_DIR": str(Path(tmp) / "data")})
        cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
        health = f"http://127.0.0.1:{port}/api/v1/health"
        with (
            spawn(mock, clean_env(), f"http://127.0.0.1:{upstream}/health") as m,
            spawn(cli, env, health, log=Path(tmp) / "lollms.log") as server,
        ):
            chat = "http://127.0.0.1:{}/v1/chat/completions"
            asyncio.run(burst(runs[0], chat.format(upstream), "mock", m.pid))
            print(f"done: {runs[0].name}", file=sys.stderr)
            asyncio.run(burst(runs[1], chat.format(port), "mock/mock", server.pid))
            print(f"done: {runs[1].name}", file=sys.stderr)
            log = (Path(tmp) / "lollms.log").read_text(errors="replace").splitlines()
            for line in log[-5:]:
                print(f"server log: {line[:300]}", file=sys.stderr)
    return runs, limit, server.startup_s


def table(runs: list[Run], limit: int, delay: float) -> str:
    """Markdown: one row per run, then the error messages, then the target."""
    lines = [
        f"Run: {machine()}; open-file limit {limit}; each stream 20 chunks, {delay:g} s apart.",
        "",
        "| run | streams | completed | errors | peak open at once | all open after s "
        "| TTFT p50 / p95 / max s | duration p50 / max s | wall s | process CPU s "
        "| CPU ms/stream | RSS before MiB | peak RSS MiB | peak open fds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        all_open = "never" if run.all_open_s is None else f"{run.all_open_s:.2f}"
        ttft_max = max(run.ttfts, default=float("nan"))
        lines.append(
            f"| {run.name} | {run.streams} | {len(run.durations)} | {sum(run.errors.values())} "
            f"| {run.peak_open} | {all_open} | {pct(run.ttfts, 50) / 1000:.2f} / "
            f"{pct(run.ttfts, 95) / 1000:.2f} / {ttft_max:.2f} "
            f"| {pct(run.durations, 50) / 1000:.2f} / {max(run.durations, default=0):.2f} "
            f"| {run.wall_s:.1f} | {run.cpu_s:.2f} | {run.cpu_s / run.streams * 1000:.2f} "
            f"| {run.rss_before_mb:.1f} | {run.peak_rss_mb:.1f} | {run.peak_fds} |"
        )
    for run in runs:
        for message, count in run.errors.most_common(5):
            lines.append(f"\n{run.name}: {count} x `{message.replace('|', '/')}`")
    ours = runs[-1]
    met = not ours.errors and ours.peak_open == ours.streams
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| {ours.streams} concurrent open streams, no errors | {ours.peak_open} open at once, "
        f"{sum(ours.errors.values())} errors | {'yes' if met else '**no**'} |",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and print (or write) the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunk-delay", type=float, default=0.5, help="seconds between chunks")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    runs, limit, _ = measure(args.streams, args.chunk_delay)
    text = table(runs, limit, args.chunk_delay)
    print(text)
    if args.write:
        write_section(MARKER, text, "1,000 concurrent streams")


if __name__ == "__main__":
    main()
