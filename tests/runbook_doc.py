"""The runbook's shell blocks (`docs/operations.md`), by rehearsal name, and a way to run them.

A block is tagged after its fence: ```` ```bash rehearsed=<name> ````. The commands run with bash
(`-euo pipefail`), as written, in an environment that sets the runbook's variables
(`LOLLMS_CONFIG`, `LOLLMS_URL`, ...) to the test's own server; nothing in them is rewritten.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
FENCE = re.compile(r"^ *```(\w*)([^\n]*)\n(.*?)^ *```\s*$", re.MULTILINE | re.DOTALL)
TAG = re.compile(r"\brehearsed=([\w-]+)")


@dataclass(frozen=True)
class Block:
    """One fenced block of the runbook."""

    language: str
    name: str | None
    script: str
    line: int


def runbook_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the runbook, in order, with its rehearsal name if tagged."""
    text = RUNBOOK.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in FENCE.finditer(text):
        tag = TAG.search(match.group(2))
        indent = len(match.group(0)) - len(match.group(0).lstrip(" "))
        script = "\n".join(line[indent:] for line in match.group(3).splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), tag.group(1) if tag else None, script, line))
    return found


def scripts() -> dict[str, str]:
    """Each rehearsal name's commands."""
    return {block.name: block.script for block in runbook_blocks() if block.name}


def operator_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without LOLLMS_*, the venv's scripts first on PATH, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(values)
    return env


def run_block(name: str, values: Mapping[str, str], timeout_s: float = 120) -> str:
    """Run the block `name` with the runbook's variables set to `values`; its output."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", scripts()[name]],
        env=operator_env(values),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def start_block(name: str, values: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start the block `name` (a command that keeps running, e.g. the server) in the background."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", "exec " + scripts()[name].strip()],
            env=operator_env(values),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
