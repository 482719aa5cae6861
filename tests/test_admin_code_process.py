"""Functions and personality scripts that misbehave in ways only a real process shows: one that
calls sys.exit() is an error and the server keeps serving; sync ones that never return neither
starve the server's other worker-thread work nor keep it from stopping."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lollms_server.testing import lollms_process

FUNCTIONS = """
import asyncio, sys, time
from lollms_server.service.functions import function

@function
def leave() -> str:
    \"\"\"Calls sys.exit from a worker thread.\"\"\"
    sys.exit(3)

@function
async def leave_async() -> str:
    \"\"\"Calls sys.exit on the server loop.\"\"\"
    sys.exit(4)

@function
def interrupt() -> str:
    \"\"\"Raises KeyboardInterrupt in a worker thread (only the main thread gets a real one).\"\"\"
    raise KeyboardInterrupt("not from a terminal")

@function(timeout_s=0.3)
def stuck() -> str:
    \"\"\"Never returns.\"\"\"
    time.sleep(3600)
    return "never"
"""

# context.run is for sync scripts; from the server loop it would wait on that very loop
BLOCKING_SCRIPT = """
async def run_workflow(prompt, params, context):
    return context.run(context.generate_text("hi"))
"""

CONFIG = '[bindings.echo]\ntype = "echo"\n\n[defaults]\nttt = "echo"\ntti = "echo"\n'


def post(url: str, body: dict[str, Any], timeout: float = 20) -> tuple[int, str]:
    """POST JSON; the status and body, errors included."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def prepare(data: Path) -> None:
    """A functions file, two scripted personalities that call sys.exit() and one that waits
    on the server loop from it."""
    (data / "functions").mkdir(parents=True)
    (data / "functions" / "faults.py").write_text(FUNCTIONS)
    quits = "import sys\n{}def run_workflow(prompt, params, context):\n    sys.exit(5)\n"
    for name, script in {
        "quitter": quits.format("async "),
        "quitter_sync": quits.format(""),
        "blocker": BLOCKING_SCRIPT,
    }.items():
        folder = data / "personalities" / name
        (folder / "scripts").mkdir(parents=True)
        (folder / "config.yaml").write_text(f"name: {name}\n")
        (folder / "scripts" / "workflow.py").write_text(script)


def call(url: str, name: str, stream: bool = False) -> tuple[int, str]:
    """Ask the echo model to call the function `name`."""
    body = {"input_data": [{"type": "text", "data": f"CALL {name} {{}}"}], "functions": [name]}
    return post(f"{url}/api/v1/generate", {**body, "stream": stream})


def test_sys_exit_or_an_interrupt_in_admin_code_is_an_error_and_the_server_lives(
    tmp_path: Path,
) -> None:
    prepare(tmp_path / "data")
    with lollms_process(tmp_path, CONFIG) as server:
        for name, error in {
            "leave": "SystemExit",
            "leave_async": "SystemExit",
            "interrupt": "KeyboardInterrupt",
        }.items():
            status, text = call(server.url, name)
            assert status == 200, text
            (step, _final) = json.loads(text)["steps"]
            assert error in step["function_calls"][0]["error"], text
        for personality in ("quitter", "quitter_sync"):
            for stream in (False, True):
                body = {"personality": personality, "input_data": [{"type": "text", "data": "x"}]}
                status, text = post(f"{server.url}/api/v1/generate", {**body, "stream": stream})
                assert status == 502, text  # the script failed before its first chunk
                assert "SystemExit" in text and personality in text, text
        assert server.process.poll() is None, server.log()[-3000:]


def test_stuck_sync_functions_leave_other_work_and_stopping_alone(tmp_path: Path) -> None:
    prepare(tmp_path / "data")
    settings = {"drain_timeout_s": 2}
    with lollms_process(tmp_path, CONFIG, server_settings=settings) as server:
        for _ in range(12):  # more than the default executor's threads on any small machine
            status, text = call(server.url, "stuck")
            assert status == 200 and "no result within 0.3s" in text, text
        started = time.monotonic()
        image = {"generation_type": "tti", "input_data": [{"type": "text", "data": "a cat"}]}
        status, text = post(f"{server.url}/api/v1/generate", image, timeout=10)
        assert status == 200 and "image/png" in text, text
        assert time.monotonic() - started < 5
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        server.process.wait(20)
        assert time.monotonic() - started < 10, server.log()[-3000:]


def test_a_file_calling_sys_exit_on_import_is_a_problem_not_a_stop(tmp_path: Path) -> None:
    """At start-up and on reload: the file is reported under `problems`, the server serves."""
    data = tmp_path / "data"
    prepare(data)
    (data / "functions" / "quits.py").write_text("import sys\nsys.exit('bye')\n")
    folder = data / "personalities" / "quits_on_import"
    (folder / "scripts").mkdir(parents=True)
    (folder / "config.yaml").write_text("name: quits_on_import\n")
    (folder / "scripts" / "workflow.py").write_text("import sys\nsys.exit(7)\n")
    with lollms_process(tmp_path, CONFIG, timeout_s=20) as server:
        for _ in range(2):  # as started, then reloaded
            with urllib.request.urlopen(f"{server.url}/api/v1/list_functions") as response:
                problems = json.loads(response.read())["problems"]
            assert any("quits.py" in p and "SystemExit" in p for p in problems), problems
            with urllib.request.urlopen(f"{server.url}/api/v1/list_personalities") as response:
                problems = json.loads(response.read())["problems"]
            assert any("quits_on_import" in p and "SystemExit" in p for p in problems), problems
            status, text = post(f"{server.url}/api/v1/reload_personalities", {})
            assert status == 200, text
        assert server.process.poll() is None, server.log()[-3000:]


def test_context_run_from_an_async_script_is_an_error_not_a_frozen_server(tmp_path: Path) -> None:
    prepare(tmp_path / "data")
    with lollms_process(tmp_path, CONFIG) as server:
        body = {"personality": "blocker", "input_data": [{"type": "text", "data": "x"}]}
        status, text = post(f"{server.url}/api/v1/generate", body, timeout=10)
        assert status == 502 and "workflow_error" in text, text
        assert "await" in text, text  # it says what to do instead
        with urllib.request.urlopen(f"{server.url}/api/v1/health", timeout=5) as health:
            assert health.status == 200
