"""A real server process (echo binding) for the `lollms-client` tests, and helpers to read
which routes the library called."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.testing.process import ServerProcess, lollms_process, request_lines

CONFIG = """
[bindings.echo]
type = "echo"
delay_ms = 0

[defaults]
ttt = "echo/echo"
tti = "echo/echo"
i2i = "echo/echo"
tts = "echo/echo"
stt = "echo/echo"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One echo server process for the module (local access: no key needed)."""
    with lollms_process(tmp_path_factory.mktemp("lollms-client"), CONFIG) as running:
        yield running


def requests_seen(server: ServerProcess) -> list[str]:
    """`METHOD /path STATUS` of every request the server logged so far, in order."""
    return request_lines(server.log())


def new_requests(server: ServerProcess, before: list[str], *wanted: str) -> list[str]:
    """The requests logged since `before` was taken, once every `wanted` line is among them, as
    many times as it is wanted (the log line of a request may land just after its response: a
    short wait, no timing)."""
    for _ in range(100):
        seen = requests_seen(server)[len(before) :]
        if not Counter(wanted) - Counter(seen):
            return seen
        time.sleep(0.05)
    return requests_seen(server)[len(before) :]


def write_speech(folder: Path, text: str) -> Path:
    """A WAV file the echo binding transcribes back to `text`."""
    from lollms_server.builtin.echo import speak

    path = folder / "speech.wav"
    path.write_bytes(speak(text))
    return path
