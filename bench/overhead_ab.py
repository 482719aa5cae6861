"""Issue 15's figures before and after a change: bench/overhead.py run alternately on two trees.

`python bench/overhead_ab.py BEFORE [AFTER] [--runs 10]` checks BEFORE (and AFTER, when given)
out into temporary git worktrees and runs `bench/overhead.py --no-litellm --c1-only` on each in
turn, `--runs` times, fresh processes every run: the tree's core and plugins go first on
`PYTHONPATH` (without AFTER, the "after" side is this checkout's installed tree). One run swings
by ±15 % on a shared machine, more than most changes, so only alternating runs compare two
trees. Prints each figure's runs and median per side next to its goal; `--write MARKER` puts
the table in the `<!-- MARKER -->` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from common import HERE, machine, tree_pythonpath, worktree, write_section

GOALS = {  # issue 15, at c = 1: the most each figure may be
    "added p50 ratio": 2.0,
    "added TTFT ratio": 2.0,
    "CPU ratio, chat": 2.0,
    "CPU ms/stream": 1.5,
}


def run(pythonpath: str | None, out: Path) -> None:
    """One overhead run whose lollms-server imports from `pythonpath` (None: as installed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, str(HERE / "overhead.py"), "--no-litellm", "--c1-only"]
    command += ["--ratios-json", str(out)]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)


def table(names: tuple[str, str], sides: tuple[list[dict[str, float]], ...]) -> list[str]:
    """One row per figure: goal, each side's runs and median, and whether `after` meets it."""
    lines = [
        f"| figure | goal | before (`{names[0]}`) runs | before median "
        f"| after (`{names[1]}`) runs | after median | met after |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in sides[0][0]:
        cells = []
        for runs in sides:
            values = [run[figure] for run in runs]
            cells += [", ".join(f"{v:.2f}" for v in values), f"{statistics.median(values):.2f}"]
        goal = GOALS.get(figure)
        after = statistics.median(run[figure] for run in sides[1])
        met = "" if goal is None else "yes" if after <= goal else "**no**"
        lines.append(f"| {figure} | {'' if goal is None else f'≤ {goal:g}'} | "
                     f"{' | '.join(cells)} | {met} |")  # fmt: skip
    return lines


def main() -> None:
    """Alternate the runs, then print (or write) the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("before", help="a commit")
    parser.add_argument("after", nargs="?", help="a commit (default: this checkout, installed)")
    parser.add_argument("--runs", type=int, default=10, help="runs of each tree")
    parser.add_argument("--write", metavar="MARKER", help="docs/benchmarks.md section to replace")
    args = parser.parse_args()
    header = machine()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        before = stack.enter_context(worktree(args.before, folder / "before"))
        after = stack.enter_context(worktree(args.after, folder / "after")) if args.after else None
        paths = [tree_pythonpath(before), tree_pythonpath(after) if after else None]
        outs = [folder / "before.json", folder / "after.json"]
        began = time.strftime("%H:%M", time.gmtime())
        for index in range(args.runs):
            for path, out in zip(paths, outs, strict=True):
                run(path, out)
            print(f"done: run {index + 1} of {args.runs}", file=sys.stderr)
        window = f"{began}-{time.strftime('%H:%M', time.gmtime())} UTC"
        sides = tuple([json.loads(line) for line in out.read_text().splitlines()] for out in outs)
    names = (args.before, args.after or "this checkout")
    text = "\n".join([
        f"Runs alternated before, after (x{args.runs}, {window}), {header}; "
        "`bench/overhead.py --no-litellm --c1-only --ratios-json`.",
        "",
        *table(names, sides),
    ])  # fmt: skip
    print(text)
    if args.write:
        write_section(f"<!-- {args.write} -->", text, "Overhead before and after (issue 15)")


if __name__ == "__main__":
    main()
