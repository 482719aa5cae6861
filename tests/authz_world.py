"""The two real servers of the authorization tests (see test_authz_process.py) and the
clients they use: plain urllib, a non-loopback Host for "remote" calls, keys made with the CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lollms_server.testing.process import (
    SERVER_COMMAND,
    ServerProcess,
    lollms_process,
    server_env,
)

REMOTE_HOST = "lollms.example"
HOLD = """
import asyncio
import pathlib


async def run_workflow(prompt, params, context):
    context.send_chunk("started")
    marker = pathlib.Path(prompt)  # the test names a file; the script holds until it exists
    for _ in range(600):
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    return " done"
"""
OWN_THREAD = """
import threading


def run_workflow(prompt, params, context):
    box = {}

    def work():
        try:
            box["text"] = context.run(context.generate_text(prompt))
        except Exception as exc:
            box["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["text"]
"""
IN_WORKER = """
def run_workflow(prompt, params, context):
    return context.run(context.generate_text(prompt))
"""


@dataclass
class Reply:
    """What came back: status, body and headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


@dataclass
class Served:
    """One server process and how to reach it (and its CLI)."""

    running: ServerProcess
    folder: Path

    @property
    def base(self) -> str:
        """The server's base URL."""
        return self.running.url

    @property
    def port(self) -> int:
        """The server's port."""
        return int(self.base.rsplit(":", 1)[1])

    def key(self, name: str, *options: str) -> str:
        """A key made with the CLI (`keys create --name <name> <options>`)."""
        config = str(self.folder / "lollms.toml")
        done = subprocess.run(
            [*SERVER_COMMAND, "--config", config, "keys", "create", "--name", name, *options],
            env=server_env(self.folder / "data"),
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        cookie: str | None = None,
        local: bool = False,
        body: Any = None,
        form: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        """One request: remote unless `local`, with the key as a header or a cookie."""
        headers = {"Host": f"127.0.0.1:{self.port}" if local else REMOTE_HOST}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if cookie is not None:
            headers["Cookie"] = f"lollms_key={cookie}"
            headers["Sec-Fetch-Site"] = "same-origin"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as reply:
                return Reply(reply.status, reply.read(), dict(reply.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))

    def audit(self, admin: str, event: str) -> list[dict[str, Any]]:
        """The audit rows of one event, newest first."""
        reply = self.call("GET", f"/api/v1/audit?event={event}&limit=100", key=admin)
        assert reply.status == 200, reply.text
        events: list[dict[str, Any]] = reply.json()["events"]
        return events


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a 303 as it is instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Never follow."""
        return None


def personality(folder: Path, name: str, script: str) -> None:
    """A scripted personality folder in the data dir of the server run in `folder`."""
    folder = folder / "data" / "personalities" / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\npersonality_description: test\n")
    (folder / "scripts" / "workflow.py").write_text(textwrap.dedent(script))


@dataclass
class World:
    """The two servers and the keys of the main one."""

    upstream: Served
    main: Served
    admin: str
    user: str
    restricted: str  # user key allowed `echo/echo` only
    tmp: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Start `upstream` then `main` (see the module docstring); stop both at the end."""
    tmp = tmp_path_factory.mktemp("authz")
    main_config = """
        [bindings.echo]
        type = "echo"
        default_model = "echo"
        delay_ms = 100
        [bindings.spare]
        type = "echo"
        default_model = "echo"
        [bindings.paid]
        type = "openai"
        base_url = "@UPSTREAM@/v1"
        models = ["echo/echo"]
        capabilities = ["ttt", "stream"]
        [defaults]
        ttt = "echo"
        [resources]
        pinned = ["spare/slow"]
    """
    for name, script in (("hold", HOLD), ("own_thread", OWN_THREAD), ("in_worker", IN_WORKER)):
        personality(tmp / "main", name, script)
    upstream_config = '[bindings.echo]\ntype = "echo"\n[defaults]\nttt = "echo"\n'
    with (
        lollms_process(tmp / "upstream", upstream_config) as upstream_process,
        lollms_process(
            tmp / "main",
            textwrap.dedent(main_config).replace("@UPSTREAM@", upstream_process.url),
        ) as main_process,
    ):
        main = Served(main_process, tmp / "main")
        yield World(
            Served(upstream_process, tmp / "upstream"),
            main,
            admin=main.key("admin", "--role", "admin"),
            user=main.key("user"),
            restricted=main.key("restricted", "--models", "echo/echo"),
            tmp=tmp,
        )


class streaming:
    """A streamed OpenAI chat completion held open (its first chunk received) for the block."""

    def __init__(self, served: Served, key: str, model: str, prompt: str) -> None:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
        self.request = urllib.request.Request(
            served.base + "/v1/chat/completions",
            json.dumps(body).encode(),
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
             "Host": REMOTE_HOST},
        )  # fmt: skip
        self.reply: Any = None

    def __enter__(self) -> streaming:
        self.reply = urllib.request.urlopen(self.request, timeout=60)
        while b"content" not in self.reply.readline():
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.reply.close()  # the client leaves: the server cancels the generation


class ScriptStream:
    """A streamed scripted generation, read up to its first chunk at once, the rest later."""

    def __init__(self, served: Served, key: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            served.base + "/api/v1/generate",
            json.dumps({**body, "stream": True}).encode(),
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
             "Host": REMOTE_HOST},
        )  # fmt: skip
        self.reply = urllib.request.urlopen(request, timeout=60)
        self.text = ""
        while "started" not in self.text:
            line = self.reply.readline().decode()
            assert line, "the stream ended before the script started"
            self.text += line

    def finish(self) -> None:
        """Read the rest of the stream."""
        self.text += self.reply.read().decode()
        self.reply.close()
