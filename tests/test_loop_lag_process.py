"""A binding that blocks the event loop, in a real server process: `/metrics` shows the lag
(`lollms_event_loop_lag_seconds`) and the log says so once, not once per blocked timer."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from test_plugin_faults_process import install, post

from lollms_server.loop_lag import LagWatch
from lollms_server.testing import lollms_process

BLOCKER = """
import time
from lollms_server.sdk import Binding, Chunk, ModelInfo, hookimpl

class Blocker(Binding):
    name = "blocker"
    capabilities = frozenset({"ttt", "stream"})

    async def list_models(self):
        return [ModelInfo("sync")]

    async def stream(self, request):
        time.sleep(1.5)  # a sync client call on the event loop
        yield Chunk(content="done", finish_reason="stop")

@hookimpl
def register_bindings():
    return [Blocker]
"""
WARNING = "the event loop was blocked for"


def metrics(url: str) -> str:
    """/metrics (from loopback, which `local_access` lets in)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def lag_samples(text: str, over: str = "1.0") -> tuple[int, int]:
    """(samples, samples above `over` seconds) of lollms_event_loop_lag_seconds."""
    count = re.search(r"^lollms_event_loop_lag_seconds_count (\S+)$", text, re.M)
    below = re.search(
        rf'^lollms_event_loop_lag_seconds_bucket\{{le="{re.escape(over)}"\}} (\S+)$', text, re.M
    )
    assert count and below, text
    return int(float(count[1])), int(float(count[1]) - float(below[1]))


def test_a_binding_blocking_the_loop_shows_as_lag_and_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "site", "fakeplug_blocker", BLOCKER)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    )
    config = '[bindings.b]\ntype = "blocker"\n\n[bindings.echo]\ntype = "echo"\n'
    with lollms_process(tmp_path / "server", config) as server:
        time.sleep(1.2)  # a few samples of an idle loop
        samples, long = lag_samples(metrics(server.url))
        assert samples >= 2 and long == 0, (samples, long)
        chat = {"model": "b/sync", "messages": [{"role": "user", "content": "hi"}]}
        waits: list[float] = []

        def health() -> None:  # another client, while the binding holds the loop
            time.sleep(0.3)
            started = time.monotonic()
            urllib.request.urlopen(f"{server.url}/api/v1/health", timeout=10).read()
            waits.append(time.monotonic() - started)

        other = threading.Thread(target=health)
        other.start()
        for _ in range(2):  # blocked twice within WARN_EVERY_S
            status, text = post(f"{server.url}/v1/chat/completions", chat)
            assert status == 200 and "done" in text, text
        other.join()
        assert waits and waits[0] > 0.8, waits  # what the lag means: everyone waited
        time.sleep(0.6)  # the late timer's sample is in
        _, long = lag_samples(metrics(server.url))
        assert long >= 2, metrics(server.url)
        warnings = [line for line in server.log().splitlines() if WARNING in line]
        assert len(warnings) == 1, warnings
        assert '"level": "warning"' in warnings[0], warnings


def test_warnings_past_the_threshold_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[float] = []
    watch = LagWatch(seen.append, warn_s=0.5, every_s=10.0)
    with caplog.at_level(logging.WARNING, logger="lollms_server.loop_lag"):
        for lag, now in [(0.01, 1.0), (2.0, 2.0), (0.7, 3.0), (0.9, 12.5), (0.6, 13.0)]:
            watch.record(lag, now)
    assert seen == [0.01, 2.0, 0.7, 0.9, 0.6]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "blocked for 2.00 s" in lines[0] and "more" not in lines[0]
    assert "blocked for 0.90 s" in lines[1] and "1 more over 0.5 s" in lines[1]
