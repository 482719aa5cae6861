"""Three models, a budget that fits two: the reported loaded memory must never exceed it.

Part of bench/swap.py (also runnable alone: `python bench/budget.py --model tiny`). One model's
size is first measured as lollms-server reports it (`lollms_model_memory_bytes` once loaded:
the worker process's RSS at load); then a lollms-server with `ram_budget` = 2.5 x that size
cycles requests over three models while a thread samples `/metrics` and the real RSS of the
model processes every 25 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from common import tree
from llama_env import NAMES, loaded_memory, server, write_models
from llama_raw import chat

MIB = 2**20


@dataclass
class Budget:
    """What the three-models-two-fit cycle saw."""

    models: str = ""
    budget: int = 0
    model_bytes: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    samples: int = 0
    max_reported: int = 0
    over_reported: int = 0
    max_loaded: int = 0
    max_actual: int = 0
    over_actual: int = 0


class Sampler(threading.Thread):
    """Polls /metrics and the model processes' RSS every 25 ms until stopped."""

    def __init__(self, url: str, pid: int, result: Budget) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.result = url, pid, result
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until `done` is set."""
        result = self.result
        while not self.done.wait(0.025):
            reported, loaded = loaded_memory(self.url)
            actual = 0
            for process in tree(self.pid)[1:]:
                with contextlib.suppress(psutil.Error):
                    actual += process.memory_info().rss
            result.samples += 1
            result.max_reported = max(result.max_reported, reported)
            result.max_loaded = max(result.max_loaded, loaded)
            result.max_actual = max(result.max_actual, actual)
            result.over_reported += reported > result.budget
            result.over_actual += actual > result.budget


def model_size(folder: Path, models: Path) -> int:
    """Bytes lollms-server reports for one loaded model (no budget set)."""
    with ExitStack() as stack:
        url, _ = server(stack, folder, models, "")
        chat(url, f"local/{NAMES[0]}")
        return loaded_memory(url)[0]


def budget_cycle(folder: Path, models: Path, what: str, rounds: int) -> Budget:
    """Cycle requests over three models under a budget that fits two."""
    size = model_size(folder, models)
    result = Budget(models=what, budget=int(2.5 * size), model_bytes=size)
    with ExitStack() as stack:
        url, pid = server(stack, folder, models, f"ram_budget = {result.budget}")
        sampler = Sampler(url, pid, result)
        sampler.start()
        try:
            for index in range(rounds * len(NAMES)):
                result.requests += 1
                try:
                    chat(url, f"local/{NAMES[index % len(NAMES)]}")
                except OSError as exc:
                    body = exc.read().decode()[:300] if hasattr(exc, "read") else ""
                    result.errors.append(f"{exc} {body}".strip())
        finally:
            sampler.done.set()
            sampler.join()
    return result


def budget_lines(results: list[Budget]) -> list[str]:
    """Markdown: one row per model kind."""
    lines = [
        "| models | one model as reported / budget MiB | requests / errors | samples "
        "| max reported loaded MiB (samples over) | max models loaded at once "
        "| max real RSS of the model processes MiB (samples over) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.models} | {r.model_bytes / MIB:.1f} / {r.budget / MIB:.1f} "
            f"| {r.requests} / {len(r.errors)} | {r.samples} "
            f"| {r.max_reported / MIB:.1f} ({r.over_reported}) | {r.max_loaded} "
            f"| {r.max_actual / MIB:.1f} ({r.over_actual}) |"
        )
    for r in results:
        lines += [f"\n{r.models}: error `{error}`" for error in r.errors[:3]]
    return lines


def main() -> None:
    """Run the cycle alone and print its table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="tiny")
    parser.add_argument("--rounds", type=int, default=3, help="cycles over the three models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        what = write_models(models, args.model)
        print("\n".join(budget_lines([budget_cycle(Path(tmp), models, what, args.rounds)])))


if __name__ == "__main__":
    main()
