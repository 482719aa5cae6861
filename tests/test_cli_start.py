"""`lollms-server` as a user starts it: the whole config shown, a busy port, no instance, and
the log format following the terminal (real processes)."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from lollms_server.testing import free_port
from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

NO_INSTANCE = "no binding instance is configured"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command, to completion, in a clean environment."""
    return subprocess.run(
        [*SERVER_COMMAND, *args],
        env=server_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_show_prints_every_section_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[bindings.remote]\ntype = "openai"\napi_key = "sk-very-secret"\n'
        'base_url = "https://user:hunter2@api.example/v1"\ndefault_max_tokens = 99\n'
        '[security]\nrate_limit_storage = "async+redis://:redispw@127.0.0.1:6379"\n'
        "key_rpm = 7\n[resources]\nqueue_size = 3\n[resilience]\ncooldown_s = 9\n"
        '[functions]\nmax_steps = 2\n[routes]\nchat = ["remote/echo"]\n'
    )
    shown = run(tmp_path, "--config", str(config), "config", "show")
    assert shown.returncode == 0, shown.stderr
    for secret in ("sk-very-secret", "hunter2", "redispw"):
        assert secret not in shown.stdout
    data = json.loads(shown.stdout)
    assert {"server", "bindings", "defaults", "routes", "personalities", "functions",
            "security", "resources", "resilience"} <= set(data)  # fmt: skip
    remote = data["bindings"]["remote"]
    assert remote["api_key"] == "***" and remote["default_max_tokens"] == 99
    assert remote["base_url"] == "https://***@api.example/v1"
    assert data["security"]["key_rpm"] == 7 and data["resources"]["queue_size"] == 3
    assert data["resilience"]["cooldown_s"] == 9 and data["functions"]["max_steps"] == 2
    assert data["routes"]["chat"]["targets"] == ["remote/echo"]
    assert data["server"]["log_format"] == "auto" and "limits" in data["server"]


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], done.stderr
    assert "in use" in lines[0] and "Traceback" not in done.stderr


def test_a_bad_binding_setting_names_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text('[bindings.demo]\ntype = "echo"\ndelay_ms = "slow"\n')
    done = run(tmp_path, "--config", str(config), "serve", "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert f"invalid configuration in {config}:" in done.stderr, done.stderr
    assert "bindings.demo.delay_ms: got 'slow'" in done.stderr


def test_a_port_out_of_range_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (("--port", "99999"), ("serve", "--port", "-1")):
        done = run(tmp_path, *args)
        assert done.returncode == 2, done.stderr
        assert "argument --port: got" in done.stderr and "0-65535" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_host_that_does_not_resolve_names_the_host_option(tmp_path: Path) -> None:
    done = run(tmp_path, "--host", "no-such-host.invalid", "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "cannot listen on no-such-host.invalid:" in done.stderr, done.stderr
    assert "choose another with --host, LOLLMS_HOST or [server] host" in done.stderr


def test_no_binding_instance_warns_at_start_up(tmp_path: Path) -> None:
    with lollms_process(tmp_path, "") as server:
        log = server.log()  # written before the server listens
    warnings = [json.loads(line) for line in log.splitlines() if NO_INSTANCE in line]
    assert warnings and warnings[0]["level"] == "warning", log


def first_log_line(tmp_path: Path, *args: str, terminal: bool) -> str:
    """The first log line a server without instances writes to stderr (a pty or a pipe)."""
    config = tmp_path / "empty.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    command = [*SERVER_COMMAND, "--config", str(config), *args]
    reader, writer = pty.openpty() if terminal else os.pipe()
    process = subprocess.Popen(
        command, env=server_env(tmp_path / "data"), stdout=subprocess.DEVNULL, stderr=writer
    )
    os.close(writer)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while NO_INSTANCE.encode() not in seen and time.monotonic() < deadline:
            if select.select([reader], [], [], 0.5)[0]:
                try:
                    chunk = os.read(reader, 4096)
                except OSError:  # a pty whose process has exited
                    chunk = b""
                if not chunk and process.poll() is not None:
                    break  # it exited (a refused argument): what it wrote is all
                seen += chunk
    finally:
        process.terminate()
        process.wait(15)
        os.close(reader)
    line = next((x for x in seen.decode().splitlines() if NO_INSTANCE in x), None)
    assert line is not None, seen.decode()[-2000:]
    return line.strip()


def test_log_format_is_text_on_a_terminal_and_json_otherwise(tmp_path: Path) -> None:
    on_terminal = first_log_line(tmp_path, terminal=True)
    assert not on_terminal.startswith("{") and "WARNING" in on_terminal
    piped = first_log_line(tmp_path, terminal=False)
    assert json.loads(piped)["level"] == "warning"
    forced = first_log_line(tmp_path, "--log-format", "json", terminal=True)
    assert json.loads(forced)["level"] == "warning"
    text = first_log_line(tmp_path, "--log-format", "text", terminal=False)
    assert text.split()[2] == "WARNING"


def test_log_format_after_serve_like_the_other_serve_options(tmp_path: Path) -> None:
    """`lollms-server serve --log-format text` (the runbook starts `lollms-server serve`) is
    taken as `--port` and `--host` are there, not refused as an unrecognized argument."""
    text = first_log_line(tmp_path, "serve", "--log-format", "text", terminal=False)
    assert text.split()[2] == "WARNING"
    forced = first_log_line(tmp_path, "--log-format", "text", "serve", "--log-format", "json",
                            terminal=False)  # fmt: skip
    assert json.loads(forced)["level"] == "warning"  # given after `serve`, it wins


def test_a_full_log_disk_does_not_stop_the_server_starting(tmp_path: Path) -> None:
    """stdout and stderr on a full disk (/dev/full: every write is ENOSPC): the start-up line
    is lost like the log lines, and the server still starts and answers."""
    port = free_port()
    config = tmp_path / "full.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
        '[bindings.echo]\ntype = "echo"\n[defaults]\nttt = "echo"\n'
    )
    with open("/dev/full", "w") as full:
        process = subprocess.Popen(
            [*SERVER_COMMAND, "--config", str(config), "serve"],
            env=server_env(tmp_path / "data"), stdout=full, stderr=full,
        )  # fmt: skip
    try:
        deadline, answered = time.monotonic() + 30, False
        while not answered and process.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                answered = probe.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(0.2)
        assert process.poll() is None, f"the server exited with {process.returncode}"
        assert answered
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as r:
            assert r.status == 200  # its request log line is lost too, and it answers
    finally:
        process.terminate()
        process.wait(15)


def test_with_json_logs_every_line_the_server_writes_is_json(tmp_path: Path) -> None:
    """journald and `docker logs` merge stdout and stderr: with `log_format = "json"` the
    start-up line is a JSON log line too, so a log pipeline parsing JSON meets no plain text."""
    config = '[bindings.echo]\ntype = "echo"\n[defaults]\nttt = "echo"\n'
    with lollms_process(tmp_path, config, server_settings={"log_format": "json"}) as server:
        with urllib.request.urlopen(f"{server.url}/api/v1/health", timeout=10) as reply:
            assert reply.status == 200
        time.sleep(0.2)
        lines = server.log().splitlines()
    assert lines
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    records = [json.loads(line) for line in lines]
    started = [r for r in records if server.url in r["message"]]
    assert started and started[0]["level"] == "info", records


def test_a_data_dir_that_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """LOLLMS_DATA_DIR on a file (or a read-only or foreign path): the command names the dir
    and the reason, exit 2, no traceback."""
    taken = tmp_path / "not-a-dir"
    taken.write_text("")
    config = tmp_path / "lollms.toml"
    config.write_text('[bindings.echo]\ntype = "echo"\n')
    env = server_env(taken / "data")
    for command in (("serve", "--port", str(free_port())), ("keys", "list")):
        done = subprocess.run(
            [*SERVER_COMMAND, "--config", str(config), *command],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert f"the data dir {taken / 'data'} cannot be used" in done.stderr, done.stderr
        assert "LOLLMS_DATA_DIR" in done.stderr
    first_run = subprocess.run(  # no --config: the default config goes into the data dir
        [*SERVER_COMMAND, "keys", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert first_run.returncode == 2, first_run.stderr
    assert "Traceback" not in first_run.stderr and "LOLLMS_DATA_DIR" in first_run.stderr


def test_a_database_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A `[storage] url` in a folder that does not exist, or a data dir whose lollms.sqlite is
    not a database: the command names the file and the reason, exit 2, no traceback."""
    missing = tmp_path / "no" / "such" / "lollms.sqlite"
    config = tmp_path / "missing.toml"
    config.write_text(f'[bindings.echo]\ntype = "echo"\n[storage]\nurl = "sqlite:///{missing}"\n')
    garbage = tmp_path / "data" / "lollms.sqlite"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database, but 100 bytes of something else " * 20)
    plain = tmp_path / "plain.toml"
    plain.write_text('[bindings.echo]\ntype = "echo"\n')
    for path, named in ((config, missing), (plain, garbage)):
        for command in (("serve", "--port", str(free_port())), ("keys", "list")):
            done = subprocess.run(
                [*SERVER_COMMAND, "--config", str(path), *command],
                env=server_env(tmp_path / "data"), capture_output=True, text=True, timeout=60,
                check=False,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            assert f"cannot open the database {named}" in done.stderr, done.stderr
