"""Where lollms-server spends its CPU per proxied request: cProfile in the server process.

Starts bench/mock_upstream.py and lollms-server (the bench/overhead.py config) inside a small
wrapper that switches cProfile on at SIGUSR1 and off (writing the file) at SIGUSR2, so start-up
and warm-up are left out. It sends `--requests` non-streamed and as many streamed chat
completions at concurrency `--concurrency` between the two signals and prints the functions
with the most own time and, among lollms code, the heaviest call subtrees, per request.
The profiler's clock is the event-loop thread's CPU time (`time.thread_time`), so waits in
`epoll` and time the process spends descheduled on a busy machine do not count. cProfile slows
the server down several times: read the shares, not the absolute times.
`--write` updates `<!-- profile -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import HERE, clean_env, free_port, machine, spawn, write_section
from overhead import CONFIG, Target, drive
from overhead_report import Side

MARKER = "<!-- profile -->"
WRAPPER = """
import cProfile, signal, sys, time
from lollms_server.cli import main
profile = cProfile.Profile(time.thread_time)  # CPU of the loop's thread, not wall time
path = sys.argv.pop(1)
def start(signum, frame):
    profile.enable()
def stop(signum, frame):
    profile.disable()
    profile.dump_stats(path)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.exit(main())
"""


async def load(
    url: str, requests: int, concurrency: int, kinds: tuple[bool, ...] = (False, True)
) -> None:
    """Non-streamed then streamed requests; raises on any error."""
    target = Target("lollms-server", url, "mock/mock", 0)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for stream in kinds:
            side = Side()
            await drive(session, target, stream, requests, concurrency, side)
            if side.errors:
                raise RuntimeError(side.errors[:3])


def top(stats: pstats.Stats, key: str, count: int, requests: int) -> list[str]:
    """The `count` heaviest functions by `key` (own 'tottime', or 'cumtime' of lollms code)."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    column = 2 if key == "tottime" else 3
    rows = sorted(raw.items(), key=lambda item: item[1][column], reverse=True)
    if key == "cumtime":
        rows = [row for row in rows if "lollms" in row[0][0]]
    lines = []
    for (path, line, name), entry in rows[:count]:
        where = "/".join(Path(path).parts[-2:]) if path != "~" else "built-in"
        lines.append(
            f"| `{name}` | {where}:{line} | {entry[1] / requests:.1f} "
            f"| {entry[column] / requests * 1000:.3f} | {entry[column] / total:.1%} |"
        )
    return lines


def package_of(path: str, name: str) -> str:
    """Which library a profiled function belongs to (socket calls on their own)."""
    if path == "~":
        return "socket send/recv (syscalls)" if "_socket.socket" in name else "built-ins"
    parts = Path(path).parts
    if len(parts) < 2:
        return path  # <frozen ...>, <string>
    for marker in ("site-packages", "lollms-head", "plugins", "core"):
        if marker in parts[:-1]:
            rest = parts[parts.index(marker) + 1 :]
            if rest and rest[0] in ("core", "plugins") and len(rest) > 1:
                rest = rest[1:]
            if rest and rest[0].startswith("lollms-") and len(rest) > 1:
                rest = rest[1:]
            return rest[0].removesuffix(".py") if rest else marker
    return "stdlib " + (parts[-2] if parts[-2] != "python3.11" else parts[-1].removesuffix(".py"))


def by_package(stats: pstats.Stats, requests: int, count: int) -> list[str]:
    """Own time summed per library, per request."""
    raw = stats.stats  # type: ignore[attr-defined]
    sums: dict[str, float] = {}
    for (path, _line, name), entry in raw.items():
        key = package_of(path, name)
        sums[key] = sums.get(key, 0.0) + entry[2]
    total = sum(sums.values())
    rows = sorted(sums.items(), key=lambda item: item[1], reverse=True)[:count]
    return [
        f"| {key} | {value / requests * 1000:.3f} | {value / total:.1%} |" for key, value in rows
    ]


def total_ms(stats: pstats.Stats, requests: int) -> float:
    """Profiled CPU milliseconds per request."""
    raw = stats.stats  # type: ignore[attr-defined]
    return float(sum(entry[2] for entry in raw.values())) / requests * 1000


def main() -> None:
    """Profile, then print (or write) the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000, help="of each kind")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--save", type=Path, help="also keep the raw profile there (pstats)")
    parser.add_argument("--only", choices=("chat", "stream"), help="one kind of request only")
    args = parser.parse_args()
    kinds = {"chat": (False,), "stream": (True,)}.get(args.only or "", (False, True))
    names = ["streamed" if stream else "non-streamed" for stream in kinds]
    upstream, port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "lollms.toml"
        config.write_text(CONFIG.format(port=port, upstream=upstream))
        profile = folder / "server.prof"
        cli = [sys.executable, "-c", WRAPPER, str(profile), "--config", str(config)]
        env = clean_env({"LOLLMS_DATA_DIR": str(folder / "data")})
        mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream)]
        with spawn(mock, clean_env(), f"http://127.0.0.1:{upstream}/health"):
            health = f"http://127.0.0.1:{port}/api/v1/health"
            with spawn(cli, env, health, log=folder / "lollms.log") as server:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                asyncio.run(load(url, 50, args.concurrency))  # warm-up, not profiled
                os.kill(server.pid, signal.SIGUSR1)
                asyncio.run(load(url, args.requests, args.concurrency, kinds))
                os.kill(server.pid, signal.SIGUSR2)
                while not profile.exists():
                    time.sleep(0.05)
                time.sleep(0.5)
        out = io.StringIO()
        stats = pstats.Stats(str(profile), stream=out)
        if args.save:
            stats.dump_stats(str(args.save))
    requests = len(kinds) * args.requests
    head = "| function | file:line | calls/request | ms/request | share |"
    lines = [
        f"Run: {machine()}; {' + '.join(f'{args.requests} {name}' for name in names)} requests "
        f"at c={args.concurrency} under cProfile (times are inflated by the profiler).",
        "",
        f"Total profiled CPU per request: {total_ms(stats, requests):.3f} ms.",
        "",
        "Own time per library:",
        "",
        "| library | ms/request | share |",
        "|---|---|---|",
        *by_package(stats, requests, 15),
        "",
        "Own time (tottime) per function:",
        "",
        head,
        "|---|---|---|---|---|",
        *top(stats, "tottime", args.top, requests),
        "",
        "Including callees (cumtime), lollms code only:",
        "",
        head,
        "|---|---|---|---|---|",
        *top(stats, "cumtime", args.top, requests),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(MARKER, text, "Where lollms-server spends CPU")


if __name__ == "__main__":
    main()
