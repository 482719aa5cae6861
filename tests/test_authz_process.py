"""Authorization against real server processes (issue 12, "Authorization").

Two servers run for the module: `upstream`, a plain server with the echo binding and no keys,
and `main`, whose instance `paid` is an OpenAI binding in front of `upstream` (so it serves a
model literally named `echo/echo`), next to echo instances `echo` and `spare`. Keys are made
with the CLI; "remote" requests carry a non-loopback Host, so only the key decides.
"""

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
from lollms_server.web.pages import routes as page_routes

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


# --- page routes obey the API's rules --------------------------------------------------------

ADMIN_PAGES = {
    "/admin/keys",
    "/admin/keys/{key_id}/revoke",
    "/admin/audit",
    "/bindings/{instance}/load",
    "/bindings/{instance}/unload",
    "/personalities/reload",
}
PUBLIC_PAGES = {"/login", "/logout", "/api-docs"}
PATH_VALUES = {"instance": "echo", "key_id": "000000000000", "name": "hold", "stream_id": "none"}


def page_cases() -> list[tuple[str, str]]:
    """(method, path) of every page route, path parameters filled, plus a static file."""
    cases = [("GET", "/static/style.css")]
    for route in page_routes:
        method, path = route.method, route.path  # type: ignore[attr-defined]
        cases.append((method, path.format(**PATH_VALUES)))
    return cases


def expected_access(method: str, path: str) -> str:
    """What the matrix expects of a filled-in page path: public, user or admin."""
    for route in page_routes:
        template = route.path  # type: ignore[attr-defined]
        if template.format(**PATH_VALUES) == path:
            if template in ADMIN_PAGES:
                return "admin"
            return "public" if template in PUBLIC_PAGES else "user"
    return "public"  # the static file


def test_page_routes_auth_matrix(world: World) -> None:
    """No key, user key, restricted user key, admin key, cookie and local access, on every
    page route: 401 (or, for a page a browser opens, the login page) without a credential,
    403 for a user on an admin page, never refused where the role suffices."""
    main = world.main
    credentials: dict[str, dict[str, Any]] = {
        "no key": {},
        "user key": {"key": world.user},
        "restricted key": {"key": world.restricted},
        "admin key": {"key": world.admin},
        "user cookie": {"cookie": world.user},
        "local": {"local": True},
    }
    wrong: list[str] = []
    for method, path in page_cases():
        access = expected_access(method, path)
        form = {"model": "echo"} if method == "POST" else None
        for name, how in credentials.items():
            reply = main.call(method, path, form=form, **how)
            status = reply.status
            to_login = status == 303 and reply.headers.get("Location", "").startswith("/login")
            is_admin = name in ("admin key", "local")
            if access == "public" or (access == "user" and name != "no key") or is_admin:
                ok = status not in (401, 403)
            elif name == "no key":  # a browser is sent to the login page
                ok = status == 401 or (method == "GET" and to_login)
            else:
                ok = status == 403
            if not ok:
                wrong.append(f"{name}: {method} {path} -> {status} (route is {access})")
    assert not wrong, "\n".join(wrong)


def test_page_load_unload_go_through_the_model_service(world: World, tmp_path: Path) -> None:
    """Admin only, the key's allow-list, pinned and busy models kept, an audit row: the same
    rules as /api/v1/load_model|unload_model, on both."""
    main = world.main
    scoped_admin = main.key("scoped-admin", "--role", "admin", "--models", "echo/echo")
    user = main.call("POST", "/bindings/echo/load", key=world.user, form={"model": "echo"})
    assert user.status == 403
    for path, request in (
        ("/bindings/spare/load", {"form": {"model": "echo"}}),
        ("/api/v1/load_model", {"body": {"binding_name": "spare", "model_name": "echo"}}),
    ):
        assert main.call("POST", path, key=scoped_admin, **request).status == 403, path
    for path, request in (
        ("/bindings/spare/unload", {"form": {"model": "slow"}}),
        ("/api/v1/unload_model", {"body": {"binding_name": "spare", "model_name": "slow"}}),
    ):
        reply = main.call("POST", path, key=world.admin, **request)
        assert reply.status == 409 and "pinned" in reply.text, (path, reply.status)
    loaded = main.call("POST", "/bindings/echo/load", key=world.admin, form={"model": "echo"})
    assert loaded.status == 303
    rows = [r for r in main.audit(world.admin, "load") if r["path"] == "/bindings/echo/load"]
    assert rows and rows[0]["status"] == 200 and rows[0]["model"] == "echo"
    with streaming(main, world.admin, "echo/slow", "word " * 300):  # a running generation
        for path, request in (
            ("/bindings/echo/unload", {"form": {"model": "slow"}}),
            ("/api/v1/unload_model", {"body": {"binding_name": "echo", "model_name": "slow"}}),
        ):
            reply = main.call("POST", path, key=world.admin, **request)
            assert reply.status == 409 and "busy" in reply.text, (path, reply.status)
    refused = [r for r in main.audit(world.admin, "unload") if r["status"] == 409]
    assert len(refused) >= 4


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


# --- allow-lists match exactly -----------------------------------------------------------------


def test_allow_list_entry_names_an_instance_and_a_model(world: World) -> None:
    """A key allowed `echo/echo` may not use `paid/echo/echo` (a model named `echo/echo`)."""
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    main = world.main
    allowed = main.call("POST", "/v1/chat/completions", key=world.restricted,
                        body={**chat, "model": "echo/echo"})  # fmt: skip
    assert allowed.status == 200, allowed.text
    other = main.call("POST", "/v1/chat/completions", key=world.restricted,
                      body={**chat, "model": "paid/echo/echo"})  # fmt: skip
    assert other.status == 403, other.text
    # the model is real: the admin reaches it through `paid`
    through = main.call("POST", "/v1/chat/completions", key=world.admin,
                        body={**chat, "model": "paid/echo/echo"})  # fmt: skip
    assert through.status == 200, through.text


# --- listings show only what a key may use ----------------------------------------------------


def test_listings_show_only_what_a_key_may_use(world: World) -> None:
    main, admin, key = world.main, world.admin, world.restricted
    for model in ("echo", "think"):
        body = {"binding_name": "echo", "model_name": model}
        assert main.call("POST", "/api/v1/load_model", key=admin, body=body).status == 200

    def get(path: str, who: str) -> Any:
        reply = main.call("GET", path, key=who)
        assert reply.status == 200, (path, reply.status, reply.text)
        return reply.json()

    assert [m["id"] for m in get("/v1/models", key)["data"]] == ["echo/echo"]
    assert "paid/echo/echo" in [m["id"] for m in get("/v1/models", admin)["data"]]
    assert [m["name"] for m in get("/api/tags", key)["models"]] == ["echo/echo:latest"]
    assert [m["name"] for m in get("/api/ps", key)["models"]] == ["echo/echo:latest"]
    assert "echo/think:latest" in [m["name"] for m in get("/api/ps", admin)["models"]]
    listed = get("/api/v1/list_models", key)["models"]
    assert {i: [m["name"] for m in ms] for i, ms in listed.items()} == {"echo": ["echo"]}
    available = get("/api/v1/list_available_models/echo", key)["models"]
    assert [m["name"] for m in available] == ["echo"]
    assert main.call("GET", "/api/v1/list_available_models/paid", key=key).status == 404
    assert main.call("GET", "/v1/models/spare/echo", key=key).status == 404
    assert list(get("/api/v1/list_bindings", key)["binding_instances"]) == ["echo"]
    assert list(get("/api/v1/list_active_bindings", key)) == ["echo"]
    assert set(get("/api/v1/list_active_bindings", admin)) == {"echo", "spare", "paid"}
    spare_only = main.key("spare-only", "--bindings", "spare")
    ids = [m["id"] for m in get("/v1/models", spare_only)["data"]]
    assert ids and all(i.startswith("spare/") for i in ids), ids
    assert list(get("/api/v1/list_models", spare_only)["models"]) == ["spare"]
    for page in ("/models", "/bindings"):
        mine = main.call("GET", page, key=key).text
        everything = main.call("GET", page, key=admin).text
        assert "spare" in everything and "paid" in everything
        assert "spare" not in mine and "paid" not in mine, page


# --- fail closed ------------------------------------------------------------------------------


def test_generation_with_no_known_caller_is_refused(world: World) -> None:
    """A script that generates from a thread of its own has no caller: refused; from its own
    worker (the documented way) it runs as the request's caller."""
    main = world.main
    body = {"input_data": [{"type": "text", "data": "hello"}]}
    refused = main.call("POST", "/api/v1/generate", key=world.admin,
                        body={**body, "personality": "own_thread"})  # fmt: skip
    assert refused.status == 403 and "no caller" in refused.text, refused.text
    works = main.call("POST", "/api/v1/generate", key=world.admin,
                      body={**body, "personality": "in_worker"})  # fmt: skip
    assert works.status == 200 and "hello" in works.text, works.text


# --- the first admin key only from the CLI ----------------------------------------------------


def test_first_admin_key_only_from_the_cli(world: World) -> None:
    """`upstream` has no key: over HTTP, even locally, no admin key until the CLI made one."""
    server = world.upstream
    admin = {"name": "first", "role": "admin"}
    refused = server.call("POST", "/api/v1/keys", local=True, body=admin)
    assert refused.status == 403 and "CLI" in refused.text
    page = server.call("POST", "/admin/keys", local=True, form=admin)
    assert page.status == 403
    user = server.call("POST", "/api/v1/keys", local=True, body={"name": "u", "role": "user"})
    assert user.status == 201
    server.key("from-cli", "--role", "admin")
    assert server.call("POST", "/api/v1/keys", local=True, body=admin).status == 201


# --- scripted personalities are generations ----------------------------------------------------


def test_scripts_are_audited_and_counted(world: World, tmp_path: Path) -> None:
    """A script's run takes the key's concurrency slot, needs token budget and is audited."""
    main = world.main
    single = main.key("single", "--concurrent", "1")
    marker = tmp_path / "go"
    body = {"personality": "hold", "input_data": [{"type": "text", "data": str(marker)}]}
    holder = ScriptStream(main, single, body)
    try:
        second = main.call("POST", "/api/v1/generate", key=single, body=body)
        assert second.status == 429, second.text
    finally:
        marker.touch()
        holder.finish()
    assert "done" in holder.text
    inner = {"personality": "in_worker", "input_data": [{"type": "text", "data": "inside"}]}
    nested = main.call("POST", "/api/v1/generate", key=single, body=inner)
    assert nested.status == 200, nested.text  # its own generation runs in the script's slot
    rows = [r for r in main.audit(world.admin, "generation") if r["key_id"] == single[7:19]]
    details = [
        json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"] for r in rows
    ]
    assert any((d or {}).get("script") == "hold" for d in details), rows
    frugal = main.key("frugal", "--tpm", "5")
    prompt = {"input_data": [{"type": "text", "data": "one two three four five six seven"}]}
    assert main.call("POST", "/api/v1/generate", key=frugal, body=prompt).status == 200
    spent = main.call("POST", "/api/v1/generate", key=frugal, body=body)
    assert spent.status == 429, spent.text


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
