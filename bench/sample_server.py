"""Where the server's time goes, without a profiler's inflation: py-spy samples of the bare hop
and of lollms-server serving the same requests.

`python bench/sample_server.py` starts bench/mock_upstream.py, bench/bare_proxy.py and
lollms-server (the bench/overhead.py config: request log and audit on), and for each kind of
request (non-streamed chats, 20-chunk streams) samples each server with `py-spy record` at
1 kHz while `--requests` of them are sent at c=1. Samples of the loop waiting in `epoll` are
left out, so what remains is the time the server's thread was busy (on a busy machine, also
time it was runnable but descheduled: run it on a quiet one). cProfile (bench/profile_server.py)
slows each Python call several times and so overweights call-heavy code; sampling does not.

Each sample is charged to the innermost lollms-server frame on its stack, so a library call
made by our code (marshmallow from validation, aiohttp's client from the upstream call, the
`send` syscall from a write) counts as that code's. Samples with no lollms frame below the
server's entry point are the framework's own work (aiohttp's protocol and asyncio's loop, as
in the bare hop). `--write` updates `<!-- sampled -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import HERE, clean_env, free_port, machine, spawn, write_section
from overhead import CONFIG, Target, drive
from overhead_report import Side

MARKER = "<!-- sampled -->"
FRAME = re.compile(r"(?P<name>.*) \((?P<file>.*):\d+\)$")
ENTRY = ("cli.py",)  # the server's entry point: run_app and the loop below it
OURS = ("lollms_server/", "lollms_openai/")


async def send(url: str, stream: bool, requests: int) -> None:
    """`requests` chats (or streams) at c=1; raises on any error."""
    target = Target("server", url, "mock/mock", 0)
    async with aiohttp.ClientSession() as session:
        side = Side()
        await drive(session, target, stream, requests, 1, side)
        if side.errors:
            raise RuntimeError(side.errors[:3])


def record(pid: int, url: str, stream: bool, requests: int, out: Path) -> None:
    """Sample `pid` with py-spy while `requests` requests are served."""
    asyncio.run(send(url, stream, 50))  # warm-up, not sampled
    command = ["py-spy", "record", "--pid", str(pid), "--rate", "1000", "--format", "raw"]
    spy = subprocess.Popen(
        [*command, "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    asyncio.run(send(url, stream, requests))
    spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
    spy.wait(timeout=60)


def where(frame: str) -> str:
    """`function (package/module.py)` of one py-spy frame."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    file = match["file"]
    for marker in OURS:
        file = file.rpartition(marker)[2] if marker in file else file
    return f"{match['name']} ({file})"


def charged(path: Path) -> tuple[int, collections.Counter[str]]:
    """Busy samples, and how many are charged to each innermost lollms frame (None: framework)."""
    busy, counts = 0, collections.Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if "EpollSelector.select" in frames[-1]:
            continue  # waiting for the network, not working
        busy += int(number)
        ours = [f for f in frames if any(m in f for m in OURS)]
        innermost = where(ours[-1]) if ours else None
        if innermost is None or innermost.endswith(ENTRY[0] + ")"):
            counts["(framework: aiohttp and asyncio)"] += int(number)
        else:
            counts[innermost] += int(number)
    return busy, counts


def main() -> None:
    """Sample both servers for both kinds, then print (or write) the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="of each kind, per server")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    upstream, bare_port, port = free_port(), free_port(), free_port()
    samples: dict[tuple[str, bool], tuple[int, collections.Counter[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "lollms.toml"
        config.write_text(CONFIG.format(port=port, upstream=upstream))
        env = clean_env({"LOLLMS_DATA_DIR": str(folder / "data")})
        mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream)]
        bare = [sys.executable, str(HERE / "bare_proxy.py"), str(bare_port)]
        cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
        with spawn(mock, clean_env(), f"http://127.0.0.1:{upstream}/health"):
            sides = (
                ("bare hop", [*bare, f"http://127.0.0.1:{upstream}"], clean_env(), bare_port,
                 f"http://127.0.0.1:{bare_port}/health"),
                ("lollms-server", cli, env, port, f"http://127.0.0.1:{port}/api/v1/health"),
            )  # fmt: skip
            for name, command, side_env, side_port, health in sides:
                with spawn(command, side_env, health, log=folder / f"{side_port}.log") as server:
                    url = f"http://127.0.0.1:{side_port}/v1/chat/completions"
                    for stream in (False, True):
                        out = folder / f"{side_port}-{stream}.txt"
                        record(server.pid, url, stream, args.requests, out)
                        samples[name, stream] = charged(out)
    text = report(samples, args.requests, args.top)
    print(text)
    if args.write:
        write_section(MARKER, text, "Where the time goes, sampled")


def report(
    samples: dict[tuple[str, bool], tuple[int, collections.Counter[str]]], requests: int, top: int
) -> str:
    """The busy time per request of each server, and lollms-server's charged to its code."""
    lines = [
        f"Run: {machine()}; {requests} requests of each kind per server at c=1, py-spy at 1 kHz.",
        "",
        "| request | bare hop busy ms | lollms-server busy ms | of which framework ms |"
        " of which lollms code ms |",
        "|---|---|---|---|---|",
    ]
    for stream, kind in ((False, "chat"), (True, "20-chunk stream")):
        bare, _ = samples["bare hop", stream]
        ours, counts = samples["lollms-server", stream]
        framework = counts["(framework: aiohttp and asyncio)"]
        lines.append(
            f"| {kind} | {bare / requests:.2f} | {ours / requests:.2f} "
            f"| {framework / requests:.2f} | {(ours - framework) / requests:.2f} |"
        )
    for stream, kind in ((False, "chat"), (True, "20-chunk stream")):
        ours, counts = samples["lollms-server", stream]
        lines += ["", f"lollms-server, {kind}: busy µs per request by innermost lollms frame", ""]
        lines += ["| where | µs/request | share |", "|---|---|---|"]
        for frame, count in counts.most_common(top):
            lines.append(f"| `{frame}` | {count / requests * 1000:.0f} | {count / ours:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
