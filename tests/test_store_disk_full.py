"""A SQLite database whose disk fills up while the server runs (a real 1 MiB tmpfs): a key
change is a 503 naming the database, not a 500; generations go on; it recovers with room."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.storage.sqlite import CHECKPOINT_EVERY_S
from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

CONFIG = """
[bindings.echo]
type = "echo"
"""


def missing(reason: str) -> None:
    """Skip for want of a tmpfs, or fail where CI is set (CI runs as root and may mount)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; where CI is set, no tmpfs is a failure, not a skip)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace')}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=30)


def post(
    url: str, path: str, key: str, body: dict[str, object]
) -> tuple[int, dict[str, str], bytes]:
    """POST `body` as JSON with `key`; the status, headers and body."""
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def admin_site(tmp_path: Path, small_disk: Path) -> tuple[Path, Path, str]:
    """A config folder, a data dir on the small disk, and an admin key made there."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "lollms.toml").write_text(CONFIG)
    data = small_disk / "data"
    made = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", "admin", "--role", "admin"],
        env=server_env(data), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return folder, data, made.stdout.strip()


def test_a_full_disk_is_a_503_naming_the_database_and_recovers(
    tmp_path: Path, small_disk: Path
) -> None:
    folder, data, key = admin_site(tmp_path, small_disk)
    chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    with lollms_process(folder, CONFIG, data_dir=data) as server:
        assert post(server.url, "/api/v1/keys", key, {"name": "before"})[0] == 201
        filler = small_disk / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
        status, headers, body = post(server.url, "/api/v1/keys", key, {"name": "full"})
        assert status == 503, body
        assert headers.get("Retry-After") == "1"
        message = json.loads(body)["error"]["message"]
        assert "lollms.sqlite" in message and "full" in message, message
        for _ in range(20):  # their audit rows cannot be written: one short line each
            assert post(server.url, "/v1/chat/completions", key, chat)[0] == 200
        filler.unlink()
        assert post(server.url, "/api/v1/keys", key, {"name": "after"})[0] == 201
        assert server.process.poll() is None
        failed = [line for line in server.log().splitlines() if "could not audit" in line]
        assert len(failed) == 20, failed[:3]
        assert all("lollms.sqlite" in line and "full" in line for line in failed), failed[0]
        assert "Traceback" not in server.log()


async def test_a_wrong_statement_stays_an_error_not_a_503(tmp_path: Path) -> None:
    """Only a database that cannot be used now is a 503; a statement the code got wrong is a
    bug and is raised as it is (a 500 with its trace in the log), not hidden as retryable."""
    from lollms_server.storage.sqlite import SqliteStore

    store = SqliteStore.open(tmp_path / "db.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await store.execute("DELETE FROM nope")
    await store.close()


def wal_generation(database: Path) -> int:
    """The WAL's checkpoint sequence number (its header's bytes 12-16): it moves each time a
    writer starts the WAL over, which it does only after a checkpoint copied all of it."""
    with open(f"{database}-wal", "rb") as wal:
        return int.from_bytes(wal.read(16)[12:16], "big")


def test_checkpoints_resume_after_a_full_disk_and_the_drain_exits_0(
    tmp_path: Path, small_disk: Path
) -> None:
    """A checkpoint that fails for want of room (the WAL cannot be copied into a database file
    that must grow) is logged and retried at the next interval: once there is room again the
    WAL is checkpointed (else it would grow until the next restart), and SIGTERM still drains
    and exits 0 (a failed last checkpoint is logged, not a traceback and exit 1)."""
    folder, data, key = admin_site(tmp_path, small_disk)
    chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi " * 200}]}
    with lollms_process(folder, CONFIG, data_dir=data) as server:
        for _ in range(150):  # audit rows in the WAL, for the database file to grow by
            assert post(server.url, "/v1/chat/completions", key, chat)[0] == 200
        filler = small_disk / "filler"
        with filler.open("wb", buffering=0) as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
        time.sleep(CHECKPOINT_EVERY_S + 2)  # a checkpoint ran out of room
        filler.unlink()
        full = wal_generation(data / "lollms.sqlite")
        deadline = time.monotonic() + 3 * CHECKPOINT_EVERY_S
        while wal_generation(data / "lollms.sqlite") == full:
            assert time.monotonic() < deadline, "no checkpoint since the disk was full"
            post(server.url, "/api/v1/keys", key, {"name": "after"})  # a write starts it over
            time.sleep(1)
        assert post(server.url, "/api/v1/keys", key, {"name": "after"})[0] == 201
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, server.log()[-3000:]
        assert "Traceback" not in server.log().split("SIGTERM")[-1]
