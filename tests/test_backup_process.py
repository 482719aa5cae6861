"""`lollms-server backup` / `restore` with real processes: a backup taken while the server runs
restores onto a fresh data dir that serves the same keys (a key made after the backup is not
there); a restore onto the database of a running server is refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

CONFIG = """
[bindings.echo]
type = "echo"
"""


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lollms-server --config <folder>/lollms.toml <args>` with that folder's data dir."""
    return subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), *args],
        env=server_env(folder / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_key(folder: Path, name: str) -> str:
    """A new user key in the folder's database (the CLI prints it once)."""
    made = cli(folder, "keys", "create", "--name", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def status_with_key(url: str, key: str) -> int:
    """The status of a listing with `key`, sent as from another host (no local access)."""
    request = urllib.request.Request(
        f"{url}/api/v1/list_models", headers={"X-API-Key": key, "Host": "api.example"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            json.load(reply)
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_restore_round_trip_serves_the_keys_of_the_backup(tmp_path: Path) -> None:
    live, fresh, backup_file = tmp_path / "live", tmp_path / "fresh", tmp_path / "keys.backup"
    with lollms_process(live, CONFIG) as server:
        before = create_key(live, "before")
        assert status_with_key(server.url, before) == 200
        made = cli(live, "backup", str(backup_file))  # online: the server keeps running
        assert made.returncode == 0, made.stderr
        assert server.process.poll() is None and status_with_key(server.url, before) == 200
        after = create_key(live, "after")
        assert status_with_key(server.url, after) == 200
        refused = cli(live, "restore", "--force", str(backup_file))
        assert refused.returncode == 1 and "in use" in refused.stderr, refused
        assert status_with_key(server.url, after) == 200  # nothing was overwritten
    (fresh / "lollms.toml").parent.mkdir(parents=True)
    (fresh / "lollms.toml").write_text((live / "lollms.toml").read_text())
    restored = cli(fresh, "restore", str(backup_file))
    assert restored.returncode == 0, restored.stderr
    again = cli(fresh, "restore", str(backup_file))
    assert again.returncode == 1 and "--force" in again.stderr, again
    with lollms_process(fresh, CONFIG) as server:
        assert status_with_key(server.url, before) == 200
        assert status_with_key(server.url, after) == 401


def test_restore_refuses_a_file_that_is_not_a_lollms_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a database" * 100)
    refused = cli(tmp_path, "restore", str(junk))
    assert refused.returncode == 1 and "not a SQLite database" in refused.stderr, refused
    assert not (tmp_path / "data" / "lollms.sqlite").exists()


def test_backup_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    assert cli(tmp_path, "keys", "list").returncode == 0  # the database exists
    missing = cli(tmp_path, "backup", str(tmp_path / "no" / "such" / "folder.backup"))
    assert missing.returncode == 1 and "backup failed" in missing.stderr, missing
    database = tmp_path / "data" / "lollms.sqlite"
    itself = cli(tmp_path, "backup", str(database))
    assert itself.returncode == 1 and "database itself" in itself.stderr, itself
    assert "Traceback" not in missing.stderr + itself.stderr


def test_backup_onto_something_not_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """`backup /dev/stdout` or a device path (as root, /dev/full) used to swap the device node
    for the backup file ("backed up ... to /dev/full", exit 0): a FIFO stands in for them."""
    assert cli(tmp_path, "keys", "list").returncode == 0  # the database exists
    pipe = tmp_path / "a-pipe"
    os.mkfifo(pipe)
    refused = cli(tmp_path, "backup", str(pipe))
    assert refused.returncode == 1 and "not a regular file" in refused.stderr, refused
    assert stat.S_ISFIFO(pipe.lstat().st_mode)  # still the pipe
    assert not list(tmp_path.glob("*.partial"))
