"""A real server on a real PostgreSQL: the audit row of every answered request survives a
`kill -9` of the server; the database URL may come from the environment; a PostgreSQL URL
without its driver installed is a one-line start-up error naming the extra; a pg_dump restored
with pg_restore onto a new database serves the same keys."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from lollms_server.testing.fixtures import free_port
from lollms_server.testing.postgres import PostgresServer, postgres_server
from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

URL_VARIABLE = "TEST_LOLLMS_STORE_URL"  # not LOLLMS_*: lollms_process keeps it
CONFIG = f"""
[bindings.echo]
type = "echo"

[storage]
url_env = "{URL_VARIABLE}"
pool_size = 4
"""
ANSWERED_BEFORE_KILL = 120
WORKERS = 8


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


async def chat_until_refused(url: str, answered: list[str], stop: asyncio.Event) -> None:
    """Send chats one after another; note the request id of each one answered in full."""
    body = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        while True:
            request_id = uuid.uuid4().hex
            try:
                async with session.post(
                    f"{url}/v1/chat/completions", json=body, headers={"X-Request-Id": request_id}
                ) as response:
                    await response.json()
                    if response.status != 200:
                        continue
            except (TimeoutError, aiohttp.ClientError):
                return  # the server is gone
            answered.append(request_id)
            if len(answered) >= ANSWERED_BEFORE_KILL:
                stop.set()


async def test_kill_9_loses_no_answered_requests_audit_row(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"kill9_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(URL_VARIABLE, postgres.create_database(database))
    answered: list[str] = []
    with lollms_process(tmp_path / "replica", CONFIG) as server:
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(chat_until_refused(server.url, answered, stop))
            for _ in range(WORKERS)
        ]
        await asyncio.wait_for(stop.wait(), 120)
        server.process.kill()  # SIGKILL with requests in flight
        server.process.wait(10)
        await asyncio.wait_for(asyncio.gather(*workers), 60)
    assert len(answered) >= ANSWERED_BEFORE_KILL
    rows = postgres.psql("SELECT request_id FROM audit WHERE event = 'generation'", database)
    stored = set(rows.split())
    missing = [request_id for request_id in answered if request_id not in stored]
    assert not missing, f"{len(missing)} answered requests have no audit row"
    assert not (tmp_path / "replica" / "data" / "lollms.sqlite").exists()  # all in PostgreSQL


def test_a_postgres_url_without_its_driver_is_a_clear_start_up_error(tmp_path: Path) -> None:
    hidden = tmp_path / "no-asyncpg" / "asyncpg"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named asyncpg')\n")
    config = tmp_path / "lollms.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[storage]\nurl = "postgresql://lollms:s3cret@127.0.0.1:1/lollms"\n'
    )
    env = {**server_env(tmp_path / "data"), "PYTHONPATH": str(hidden.parent)}
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(config), "serve"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "lollms-server[postgres]" in done.stderr and "asyncpg" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout


def test_an_unreachable_database_is_a_clear_start_up_error(tmp_path: Path) -> None:
    config = tmp_path / "lollms.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[storage]\nurl = "postgresql://lollms:s3cret@127.0.0.1:{free_port()}/lollms"\n'
        "connect_timeout_s = 5\n"
    )
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(config), "keys", "list"],
        env=server_env(tmp_path / "data"), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "cannot connect to the database postgresql://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


def test_pg_dump_then_pg_restore_onto_a_new_database_serves_the_same_keys(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup procedure of docs/deployment.md for the PostgreSQL store."""
    source = postgres.create_database(f"live_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv(URL_VARIABLE, source)
    folder, key = site_with_key(tmp_path, CONFIG)
    dump = tmp_path / "lollms.dump"
    subprocess.run(
        [str(postgres.bin / "pg_dump"), "--format=custom", f"--file={dump}", source],
        check=True, timeout=120,
    )  # fmt: skip
    target = postgres.create_database(f"restored_{uuid.uuid4().hex[:8]}")
    subprocess.run(
        [str(postgres.bin / "pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={target}",
         str(dump)],
        check=True, timeout=120,
    )  # fmt: skip
    monkeypatch.setenv(URL_VARIABLE, target)
    with lollms_process(folder, CONFIG) as server:
        request = urllib.request.Request(
            f"{server.url}/api/v1/list_models", headers={"X-API-Key": key, "Host": "api.example"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
        stranger = urllib.request.Request(
            f"{server.url}/api/v1/list_models",
            headers={"X-API-Key": key[:-2] + "xx", "Host": "api.example"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(stranger, timeout=10)
        assert refused.value.code == 401


def site_with_key(tmp_path: Path, config: str) -> tuple[Path, str]:
    """A site folder with `config`, and a user key made by the CLI in its database."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "lollms.toml").write_text(config)
    made = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create", "--name", "k"],
        env=server_env(folder / "data"), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return folder, made.stdout.strip()


def key_status(url: str, key: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a listing with `key`, as from another host."""
    request = urllib.request.Request(
        f"{url}/api/v1/list_models", headers={"X-API-Key": key, "Host": "api.example"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_a_lost_database_is_a_503_and_the_server_recovers_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_server() as own:  # its own: this test stops and restarts it
        monkeypatch.setenv(URL_VARIABLE, own.create_database("lost"))
        folder, key = site_with_key(tmp_path, CONFIG)
        with lollms_process(folder, CONFIG) as server:
            assert key_status(server.url, key)[0] == 200
            own.stop()
            status, headers, body = key_status(server.url, key)
            assert status == 503, body
            assert headers.get("Retry-After") == "1"
            assert "database" in json.loads(body)["error"]["message"]
            own.start()
            deadline = time.monotonic() + 60
            while (status := key_status(server.url, key)[0]) != 200:
                assert status == 503 and time.monotonic() < deadline, status
                time.sleep(0.2)
            assert server.process.poll() is None


def test_a_hung_database_is_a_503_within_the_statement_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_server() as own:  # its own: this test freezes it
        monkeypatch.setenv(URL_VARIABLE, own.create_database("hung"))
        config = CONFIG + "statement_timeout_s = 1\n"
        folder, key = site_with_key(tmp_path, config)
        with lollms_process(folder, config) as server:
            assert key_status(server.url, key)[0] == 200
            assert own.process is not None
            frozen = [own.process.pid, *children(own.process.pid)]
            for pid in frozen:  # postgres and its backends stop answering (a partition)
                os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                status, headers, body = key_status(server.url, key)
                waited = time.monotonic() - started
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert status == 503, body
            assert waited < 5, waited
            assert headers.get("Retry-After") == "1"
            assert "database" in json.loads(body)["error"]["message"]
            deadline = time.monotonic() + 60
            while (status := key_status(server.url, key)[0]) != 200:
                assert status == 503 and time.monotonic() < deadline, status
                time.sleep(0.2)


def children(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid`."""
    listed = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(word) for word in listed.stdout.split()]


async def test_connections_terminated_under_load_are_503s_never_500s(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover, an operator or a pooler ends the server's connections (pg_terminate_backend:
    each gets FATAL 57P01) while 16 clients list models: a request caught on such a
    connection is a 503 with Retry-After, never a 500, and the server keeps serving."""
    database = f"terminated_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(URL_VARIABLE, postgres.create_database(database))
    folder, key = site_with_key(tmp_path, CONFIG)
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    seen: Counter[int] = Counter()
    with lollms_process(folder, CONFIG) as server:
        stop = asyncio.Event()

        async def client() -> None:
            headers = {"X-API-Key": key, "Host": "api.example"}
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    url = f"{server.url}/api/v1/list_models"
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        seen[response.status] += 1
                        if response.status == 503:
                            assert response.headers.get("Retry-After") == "1"

        clients = [asyncio.create_task(client()) for _ in range(16)]
        for _ in range(20):
            await asyncio.sleep(0.2)
            await asyncio.to_thread(postgres.psql, terminate)
        await asyncio.sleep(1)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 60)
        assert key_status(server.url, key)[0] == 200
        assert "unhandled error" not in server.log()
    assert set(seen) <= {200, 503}, seen
    assert seen[200] > 100, seen


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://lollms:pa/ss#wd@127.0.0.1:5432/lollms",  # / and # not %-encoded
        "postgresql://lollms:p@ss@127.0.0.1:5432/lollms",  # @ not %-encoded
        "postgresql://lollms:pa[ss@127.0.0.1:5432/lollms",  # [ not %-encoded
    ],
)
def test_a_malformed_database_url_is_a_clear_start_up_error(tmp_path: Path, url: str) -> None:
    """A password with a URL delimiter in it, not %-encoded, is the common slip: one line
    naming the variable and the fix, exit 2, no traceback, no part of the password."""
    config = tmp_path / "lollms.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[storage]\nurl_env = "{URL_VARIABLE}"\n'
    )
    for command in ("serve", "keys list"):
        done = subprocess.run(
            [*SERVER_COMMAND, "--config", str(config), *command.split()],
            env={**server_env(tmp_path / "data"), URL_VARIABLE: url},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert f"{URL_VARIABLE} is not a valid PostgreSQL URL" in done.stderr, done.stderr
        assert "percent-encode" in done.stderr
        for fragment in ("pa/ss", "ss#wd", "p@ss", "pa[ss", "'pa'", "'ss"):
            assert fragment not in done.stderr + done.stdout, fragment


async def test_a_hung_database_fails_fast_after_the_first_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition under load: once one statement has timed out, the requests that follow get
    their 503 at once (one trial at a time waits for the database), not each after
    `statement_timeout_s`, which HAProxy's `retry-on 503` would multiply by 4 (20 s)."""
    with postgres_server() as own:  # its own: this test freezes it
        monkeypatch.setenv(URL_VARIABLE, own.create_database("hung_load"))
        folder, key = site_with_key(tmp_path, CONFIG)
        with lollms_process(folder, CONFIG) as server:
            assert key_status(server.url, key)[0] == 200
            assert own.process is not None
            frozen = [own.process.pid, *children(own.process.pid)]
            waits: list[tuple[int, float]] = []

            async def client(until: float) -> None:
                headers = {"X-API-Key": key, "Host": "api.example"}
                async with aiohttp.ClientSession() as session:
                    while time.monotonic() < until:
                        started = time.monotonic()
                        url = f"{server.url}/api/v1/list_models"
                        async with session.get(url, headers=headers) as response:
                            await response.read()
                        waits.append((response.status, time.monotonic() - started))

            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                until = time.monotonic() + 12
                await asyncio.gather(*(client(until) for _ in range(8)))
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert {status for status, _ in waits} == {503}, waits
            slow = [wait for _, wait in waits if wait > 1]
            assert all(wait < 7 for _, wait in waits), waits  # 5 s statement timeout + margin
            assert len(waits) > 100 and len(slow) <= 8 * 3, (len(waits), slow)
            deadline = time.monotonic() + 30
            while (status := key_status(server.url, key)[0]) != 200:
                assert status == 503 and time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
