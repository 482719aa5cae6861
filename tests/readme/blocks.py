"""The README's fenced blocks, split into commands, each classified: run, or why not.

Rewrites, and only these: `127.0.0.1:9601` / `localhost:9601` become the test server's address
(`rewrite_address`), and the placeholders of `PLACEHOLDERS` (`<key id>`) become what an
earlier command printed. HOME and the data dir are not rewritten: the commands run with HOME
set to an empty temporary folder, so `~/.lollms-server` is a fresh data dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
README_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):9601\b")
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
SHELLS = ("bash", "sh", "shell")

# Commands (a part of an `a && b` line) that are not run, each with the reason. A pattern that
# no README command matches any more is reported, so this list cannot go stale.
NOT_RUN: tuple[tuple[str, str], ...] = (
    (r"pip install nox uv$", "installs nox and uv: the test runs inside nox"),
    (r"nox\b.*", "runs every test session, this test included"),
    (r"pip install \.$", "installs the core: the test runs inside that install (nox installs it)"),
)
# The command that starts the server: the harness starts it itself (the `server` fixture).
START = re.compile(r"lollms-server(?: serve)?(?: --host \S+| --port \S+)*")

# Whole blocks that are not run, by language and a regex found in the block, with the reason.
NOT_RUN_BLOCKS: tuple[tuple[str, str, str], ...] = (
    (
        "nginx",
        r"proxy_pass http://127\.0\.0\.1:9601;",
        "run by tests/test_security_proxy.py: a real nginx with this block in front of a server",
    ),
    ("caddy", r"reverse_proxy 127\.0\.0\.1:9601", "Caddy is not installed on the test machines"),
)


@dataclass
class Block:
    """One fenced block of the README."""

    language: str
    text: str
    line: int  # 1-based line of the opening fence

    @property
    def id(self) -> str:
        """A readable test id: the language and the line of the fence."""
        return f"{self.language or 'text'}-L{self.line}"


@dataclass
class Command:
    """One shell command of a block (continuations and heredocs joined), or a part of `a && b`."""

    text: str
    skip_reason: str | None = None
    starts_server: bool = False


@dataclass
class RunState:
    """What earlier commands printed that later ones refer to (for the placeholders)."""

    values: dict[str, str] = field(default_factory=dict)

    def learn(self, output: str) -> None:
        """Remember a created key and its id."""
        if found := re.search(r"\bkey id (\S+)", output):
            self.values["<key id>"] = found.group(1)
        if found := re.search(r"\blollms_[A-Za-z0-9_-]+", output):
            self.values["<key>"] = found.group(0)


PLACEHOLDERS = ("<key id>", "<key>")


def blocks(markdown: str) -> list[Block]:
    """Every fenced block, in order."""
    found = []
    for match in FENCE.finditer(markdown):
        line = markdown.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1).lower(), match.group(2), line))
    return found


def logical_lines(script: str) -> list[str]:
    """Shell lines with `\\` continuations and heredoc bodies joined; comment lines dropped."""
    lines: list[str] = []
    pending: list[str] = []
    terminator: str | None = None
    for raw in script.splitlines():
        if terminator is not None:
            pending.append(raw)
            if raw.strip() == terminator:
                lines.append("\n".join(pending))
                pending, terminator = [], None
            continue
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        pending.append(raw)
        if raw.endswith("\\"):
            continue
        if heredoc := HEREDOC.search(raw):
            terminator = heredoc.group(1)
            continue
        lines.append("\n".join(pending))
        pending = []
    if pending:
        lines.append("\n".join(pending))
    return lines


def commands(block: Block) -> list[Command]:
    """A shell block's commands: `a && b` parts that are not run are split off with reasons."""
    result = []
    for line in logical_lines(block.text):
        parts = [p.strip() for p in line.split(" && ")] if "\n" not in line else [line]
        run: list[str] = []
        for part in parts:
            reason = skip_reason(part)
            if reason is not None or START.fullmatch(_uncommented(part)):
                result.append(Command(part, reason, starts_server=reason is None))
            else:
                run.append(part)
        if run:
            result.append(Command(" && ".join(run)))
    return result


def skip_reason(command: str) -> str | None:
    """Why a command is not run, if it is listed in NOT_RUN."""
    text = _uncommented(command)
    for pattern, reason in NOT_RUN:
        if re.fullmatch(pattern, text):
            return reason
    return None


def block_skip_reason(block: Block) -> str | None:
    """Why a whole block is not run, if it is listed in NOT_RUN_BLOCKS."""
    for language, pattern, reason in NOT_RUN_BLOCKS:
        if block.language == language and re.search(pattern, block.text):
            return reason
    return None


def _uncommented(command: str) -> str:
    return re.sub(r"\s+#.*$", "", command).strip()


def rewrite_address(text: str, port: int) -> str:
    """The README's address, `127.0.0.1:9601`, replaced by the test server's."""
    return README_ADDRESS.sub(f"127.0.0.1:{port}", text)


def fill_placeholders(command: str, state: RunState) -> str:
    """`<key id>` and the like replaced by what earlier commands printed."""
    for name in PLACEHOLDERS:
        if name in command:
            if name not in state.values:
                raise LookupError(f"{name} is used before a command printed one")
            command = command.replace(name, state.values[name])
    return command
