"""The README runs as written: every fenced block is run, parsed, or listed with a reason.

Shell commands run with bash against a real server process that the harness starts with the
README's own start command (in an empty HOME, on a free port); Python blocks run as scripts;
TOML blocks load through the config schema, JSON blocks must parse. See blocks.py for the only
rewrites made.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.testing import free_port, wait_for_http

from .blocks import (
    NOT_RUN,
    NOT_RUN_BLOCKS,
    SHELLS,
    Block,
    RunState,
    block_skip_reason,
    blocks,
    commands,
)
from .runner import Sandbox, check_toml, run_python, run_shell

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = blocks(README.read_text(encoding="utf-8"))


def start_command() -> str:
    """The README's command that starts the server."""
    for block in BLOCKS:
        if block.language in SHELLS:
            for command in commands(block):
                if command.starts_server:
                    return command.text
    raise AssertionError("the README shows no command that starts the server")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """An empty HOME and work folder; the port the server listens on."""
    return Sandbox.create(tmp_path_factory.mktemp("readme"), free_port())


@pytest.fixture(scope="module")
def server(sandbox: Sandbox) -> Iterator[str]:
    """The server, started by the README's own command; yields that command."""
    command = start_command()
    log_path = sandbox.home.parent / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=sandbox.work,
            env=sandbox.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        up = wait_for_http(f"http://127.0.0.1:{sandbox.port}/api/v1/health", timeout_s=60)
        assert up and process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        yield command
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


@pytest.fixture(scope="module")
def state() -> RunState:
    """What README commands printed so far (a created key id for a later `revoke`)."""
    return RunState()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(block: Block, request: pytest.FixtureRequest) -> None:
    """Run (or parse) the block; every command not run is listed with a reason."""
    if block.language in SHELLS:
        run_commands(block, request)
    elif block.language == "python":
        request.getfixturevalue("server")
        run_python(block, request.getfixturevalue("sandbox"))
    elif block.language == "toml":
        check_toml(block)
    elif block.language == "json":
        json.loads(block.text)
    else:
        assert block_skip_reason(block), (
            f"README line {block.line}: a {block.language or 'plain'} block the test neither "
            "runs nor lists: teach tests/readme/ to run it, or add it to NOT_RUN_BLOCKS with "
            "the reason"
        )


def run_commands(block: Block, request: pytest.FixtureRequest) -> None:
    """A shell block's commands in order, against the server."""
    for command in commands(block):
        if command.skip_reason:
            continue
        started_with = request.getfixturevalue("server")
        if command.starts_server:
            assert command.text == started_with, "the harness starts the README's first command"
            continue
        run_shell(
            command.text, request.getfixturevalue("sandbox"), request.getfixturevalue("state")
        )


def test_first_run_writes_what_the_readme_says(server: str, sandbox: Sandbox) -> None:
    """The files and folders the README says the first run writes are in the empty HOME."""
    claim = re.search(r"first run writes(.*?);", README.read_text(encoding="utf-8"), re.DOTALL)
    assert claim, "the README no longer says what the first run writes"
    named = re.findall(r"`([^`]+)`", claim.group(1))
    data_dir = sandbox.home / ".lollms-server"
    assert "~/.lollms-server/lollms.toml" in named, named
    for name in named:
        path = sandbox.home / name[2:] if name.startswith("~/") else data_dir / name
        assert path.exists(), f"the first run did not write {name}"
    assert "the SQLite database" in claim.group(1) and (data_dir / "lollms.sqlite").is_file()
    assert (data_dir / "lollms.toml").read_text(encoding="utf-8").lstrip().startswith("#")


def test_not_run_lists_name_only_what_the_readme_has() -> None:
    """Each NOT_RUN entry still matches a README command (the lists cannot go stale)."""
    texts = [c.text for b in BLOCKS if b.language in SHELLS for c in commands(b)]
    for pattern, reason in NOT_RUN:
        assert any(re.fullmatch(pattern, re.sub(r"\s+#.*$", "", t)) for t in texts), (
            f"NOT_RUN {pattern!r} ({reason}) matches no README command any more"
        )
    for language, pattern, reason in NOT_RUN_BLOCKS:
        assert any(b.language == language and re.search(pattern, b.text) for b in BLOCKS), (
            f"NOT_RUN_BLOCKS {language} {pattern!r} ({reason}) matches no README block any more"
        )


PLUGIN_TOML = [
    (readme, block)
    for readme in sorted(README.parent.glob("plugins/*/README.md"))
    for block in blocks(readme.read_text(encoding="utf-8"))
    if block.language == "toml"
]


@pytest.mark.parametrize(
    ("readme", "block"),
    PLUGIN_TOML,
    ids=[f"{r.parent.name}-{b.id}" for r, b in PLUGIN_TOML],
)
def test_plugin_readme_config_loads(readme: Path, block: Block) -> None:
    """Each TOML block of a plugin README loads with the plugin's settings schema (a fragment
    is read on top of the README's earlier TOML blocks, as a reader adds it to their file)."""
    earlier = [b.text for r, b in PLUGIN_TOML if r == readme and b.line < block.line]
    assert check_toml(block, earlier) == "lollms.toml"


BROKEN = textwrap.dedent(
    """\
    ```bash
    curl -s http://127.0.0.1:9601/api/v1/no_such_route
    ```
    ```bash
    curl -sN http://127.0.0.1:9601/api/v1/generate \\
      -d '{"input_data": [{"type": "text", "data": "hi"}], "model_name": "nope", "stream": true}'
    ```
    ```python
    from openai import OpenAI
    OpenAI(base_url="http://127.0.0.1:9601/v1", api_key="x", max_retries=0).models.retrieve("x/y")
    ```
    ```toml
    [server]
    port = "not a port"
    ```
    ```toml
    [bindings.gone]
    type = "no-such-binding"
    ```
    ```toml
    [bindings.typo]
    type = "openai"
    base_ur = "http://127.0.0.1:8080/v1"
    ```
    """
)


@pytest.mark.parametrize("index", range(6))
def test_a_broken_snippet_fails(index: int, request: pytest.FixtureRequest) -> None:
    """The harness fails on a 404 curl, an error event, a raising script, a bad config, an
    unknown binding type and an unknown binding setting."""
    block = blocks(BROKEN)[index]
    if block.language != "toml":
        request.getfixturevalue("server")  # up, so the failure below is the snippet's own
    with pytest.raises(Exception) as caught:
        test_block(block, request)
    assert not isinstance(caught.value, pytest.skip.Exception)
