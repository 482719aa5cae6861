"""Helpers shared by the benchmarks: ports, processes, CPU/RSS readings, percentiles, docs."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without LOLLMS_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    return {**env, **(extra or {})}


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, started: float, limit: float, log: Path
) -> float:
    """Seconds from `started` until `url` answers 200; raises if the process dies or time ends."""
    while time.perf_counter() - started < limit:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                err = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{url}: process exited\n{err}") from None
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {limit:.0f} s")


@dataclass
class Spawned:
    """A started server process: its pid and its time from spawn to a healthy answer."""

    pid: int
    startup_s: float


@contextmanager
def spawn(
    command: list[str],
    env: Mapping[str, str],
    health: str,
    *,
    limit: float = 30.0,
    cwd: str | None = None,
    log: Path | None = None,
) -> Iterator[Spawned]:
    """Run `command` until the block ends; its stderr goes to `log` (a temporary file if None)."""
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "stderr.log"
        err = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            yield Spawned(process.pid, wait_healthy(process, health, started, limit, log))
        finally:
            stop_tree(process)


def stop_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process and its children, SIGKILL what is left after 10 s."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def tree(pid: int) -> list[psutil.Process]:
    """Process `pid` and its descendants (those still running)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by process `pid` and its descendants.

    Read in nanoseconds from each thread's /proc/<pid>/task/<tid>/schedstat where the kernel
    keeps it: psutil's user + system times count 10 ms clock ticks, too coarse for a bare
    aiohttp hop's ~50 ms of CPU per benchmark round. Falls back to psutil otherwise."""
    total = 0.0
    for proc in tree(pid):
        ns = _schedstat_ns(proc.pid)
        if ns is not None:
            total += ns / 1e9
            continue
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _schedstat_ns(pid: int) -> int | None:
    """Nanoseconds on CPU of the live threads of `pid`, or None when unreadable."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        total = 0
        for task in tasks:
            # a thread that just ended has no file any more
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{task}/schedstat") as stat,
            ):
                total += int(stat.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total or None


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` and its descendants in MiB."""
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


def pct(values: list[float], q: int) -> float:
    """The q-th percentile of `values` (seconds) in milliseconds (nan when empty)."""
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def machine() -> str:
    """Date, CPU count, memory, load and Python of this run, for the docs."""
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{date.today().isoformat()}, {psutil.cpu_count()} cores, {memory:.0f} GiB, "
        f"load average at the start {load}, Python {platform.python_version()} "
        f"({Path(sys.executable).parent.parent.name})"
    )


@contextmanager
def worktree(commit: str, parent: Path) -> Iterator[Path]:
    """`commit` checked out in a temporary git worktree under `parent` (this checkout untouched)."""
    tree = parent / commit
    git = ["git", "-C", str(HERE.parent), "worktree"]
    subprocess.run([*git, "add", "--detach", str(tree), commit], check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=True, capture_output=True)


def tree_pythonpath(tree: Path) -> str:
    """A PYTHONPATH that puts `tree`'s core and plugins before the installed ones."""
    paths = [tree / "core", *sorted((tree / "plugins").glob("lollms-*"))]
    return os.pathsep.join(str(path) for path in paths)


def write_section(marker: str, text: str, title: str) -> None:
    """Replace the `marker`-delimited section of docs/benchmarks.md (appended when missing)."""
    body = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if marker not in body:
        body = f"{body.rstrip()}\n\n## {title}\n\n{marker}\n{marker}\n"
    head, _, rest = body.partition(marker)
    _, _, tail = rest.partition(marker)
    DOCS.write_text(f"{head}{marker}\n{text}\n{marker}{tail}")
