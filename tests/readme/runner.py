"""Running README blocks: shell commands and Python in subprocesses, TOML through the schema.

A command fails when it exits non-zero, or prints a lollms error event or a traceback. `curl`
is found first in a shim folder that adds `--fail-with-body`, so an HTTP error status fails the
command as it would fail a reader (the README's `curl -s` alone exits 0 on a 500).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lollms_server.config import parse_config
from lollms_server.config_default import DEFAULT_CONFIG_TEXT
from lollms_server.hookspecs import PROJECT
from lollms_server.plugins import load_plugins
from lollms_server.registry import build_registry

from .blocks import Block, RunState, fill_placeholders, rewrite_address

COMMAND_TIMEOUT_S = 120
FAILURE_SIGNS = re.compile(r'"type":\s*"error"|Traceback \(most recent call last\)')


@dataclass
class Sandbox:
    """Where README commands run: an empty HOME, a work folder, the server's port."""

    home: Path
    work: Path
    port: int

    @classmethod
    def create(cls, root: Path, port: int) -> Sandbox:
        """Folders under `root` and the curl shim."""
        sandbox = cls(root / "home", root / "work", port)
        for folder in (sandbox.home, sandbox.work, sandbox.shims):
            folder.mkdir(parents=True, exist_ok=True)
        curl = sandbox.shims / "curl"
        real = _which("curl", exclude=sandbox.shims)
        curl.write_text(f'#!/bin/sh\nexec {real} --fail-with-body "$@"\n', encoding="utf-8")
        curl.chmod(0o755)
        return sandbox

    @property
    def shims(self) -> Path:
        """The folder put first on PATH."""
        return self.home.parent / "shims"

    def env(self) -> dict[str, str]:
        """Our environment without LOLLMS_*; HOME empty; the venv's scripts and the shims first."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
        scripts = str(Path(sys.executable).parent)
        env.update(
            HOME=str(self.home),
            PATH=os.pathsep.join([str(self.shims), scripts, env.get("PATH", "")]),
            LOLLMS_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        return env


def _which(name: str, exclude: Path) -> str:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if folder and Path(folder) != exclude and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(f"{name} is not installed")


def run_shell(command: str, sandbox: Sandbox, state: RunState) -> str:
    """Run one README command with bash; its output, or AssertionError saying what failed."""
    text = fill_placeholders(rewrite_address(command, sandbox.port), state)
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-ec", text],
        cwd=sandbox.work,
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    _check(f"$ {text}", done.returncode, output)
    state.learn(output)
    return output


def run_python(block: Block, sandbox: Sandbox) -> str:
    """Run a Python block as a script in a subprocess; its output."""
    script = sandbox.work / f"readme_L{block.line}.py"
    script.write_text(rewrite_address(block.text, sandbox.port), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=sandbox.work,
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    _check(f"python block at README line {block.line}", done.returncode, output)
    return output


def _check(what: str, returncode: int, output: str) -> None:
    if returncode != 0:
        raise AssertionError(f"{what}\nexited {returncode}:\n{output[-3000:]}")
    if sign := FAILURE_SIGNS.search(output):
        raise AssertionError(f"{what}\nprinted {sign.group(0)!r}:\n{output[-3000:]}")


def check_toml(block: Block, earlier: Sequence[str] = ()) -> str:
    """Parse a TOML block: a pyproject entry-point table, or lollms.toml content loaded through
    the config schema and every binding's own settings schema (merged over the default file and
    the `earlier` blocks of the same README, as a reader pastes each into theirs). Returns what
    it was taken for."""
    data = tomllib.loads(block.text)
    if "project" in data:
        groups = data["project"].get("entry-points", {})
        assert PROJECT in groups, f"entry-point group must be {PROJECT!r}, got {list(groups)}"
        for name, target in groups[PROJECT].items():
            assert re.fullmatch(r"[\w.]+(:[\w.]+)?", target), f"{name} = {target!r}"
        return "pyproject entry points"
    merged = tomllib.loads(DEFAULT_CONFIG_TEXT)
    for text in earlier:
        merged = _merge(merged, tomllib.loads(text))
    merged = _merge(merged, data)
    build_registry(parse_config(merged, source="README"), load_plugins())
    return "lollms.toml"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
