"""The `lollms-server` command as a user runs it: a real process on a free port."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "lollms_server.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    clean["LOLLMS_DATA_DIR"] = str(tmp_path / "data")
    return clean


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_on_embedded_defaults_answers_health(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env["LOLLMS_PORT"] = str(port)
    process = subprocess.Popen(COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as reply:
                    body = json.load(reply)
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "server did not answer in 30 s"
                time.sleep(0.05)
        assert body["status"] == "ok"
        assert (tmp_path / "data" / "lollms.toml").is_file()
        assert (tmp_path / "data" / "lollms.sqlite").is_file()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_config_init_and_show(env: dict[str, str], tmp_path: Path) -> None:
    first = run(env, "config", "init")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "data" / "lollms.toml").is_file()
    again = run(env, "config", "init")
    assert again.returncode == 1 and "--force" in again.stderr
    shown = run(env, "config", "show")
    summary = json.loads(shown.stdout)
    assert summary["server"]["port"] == 9601
    assert summary["bindings"]["echo"]["type"] == "echo"


def test_config_show_masks_secrets(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[bindings.remote]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key = "sk-very-secret"\n'
    )
    shown = run(env, "--config", str(path), "config", "show")
    assert "sk-very-secret" not in shown.stdout
    assert json.loads(shown.stdout)["bindings"]["remote"]["api_key"] == "***"


def test_config_show_gives_the_urls_in_use_from_their_variables(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`url_env` / `rate_limit_storage_env`: show prints the variable's URL (what serve uses),
    its password masked, not the file's unused value."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[storage]\nurl_env = "TEST_DB_URL"\n\n'
        '[security]\nrate_limit_storage_env = "TEST_REDIS_URL"\n'
    )
    secrets = {
        "TEST_DB_URL": "postgresql://lollms:db-secret@db.internal:5432/lollms",
        "TEST_REDIS_URL": "async+redis://:redis-secret@cache.internal:6379/0",
    }
    shown = run({**env, **secrets}, "--config", str(path), "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "db-secret" not in shown.stdout and "redis-secret" not in shown.stdout
    summary = json.loads(shown.stdout)
    assert "db.internal:5432/lollms" in summary["storage"]["url"]
    assert "cache.internal:6379" in summary["security"]["rate_limit_storage"]


def test_invalid_config_stops_start_up_naming_the_key(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "nine"\n')
    result = run(env, "--config", str(path), "serve")
    assert result.returncode == 2
    assert "server.port: got 'nine'; Not a valid integer." in result.stderr


def test_plugins_lists_echo(env: dict[str, str]) -> None:
    result = run(env, "plugins")
    assert result.returncode == 0, result.stdout
    assert "echo" in result.stdout and "lollms-server" in result.stdout
    # each binding type with its capabilities, what a plugin author checks first
    assert "  echo: audio2audio, embeddings, i2i, load_unload, stream" in result.stdout


def test_python_dash_m_runs_the_command(env: dict[str, str]) -> None:
    """`python -m lollms_server` is the `lollms-server` command (it was "No module named
    lollms_server.__main__")."""
    result = subprocess.run(
        [sys.executable, "-m", "lollms_server", "plugins"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "  echo: " in result.stdout


def test_serve_options_work_without_the_serve_word(env: dict[str, str]) -> None:
    """`lollms-server --port P` (the README's usage line) serves, like `serve --port P`."""
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as reply:
                    assert json.load(reply)["status"] == "ok"
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "server did not answer in 30 s"
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_reader_that_leaves_early_gets_no_traceback(env: dict[str, str]) -> None:
    """`keys list | head -1`: output to a closed pipe ends the command quietly."""
    for name in ("a", "b"):
        assert run(env, "keys", "create", "--name", name).returncode == 0
    process = subprocess.Popen(
        [*COMMAND, "keys", "list"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # type: ignore[union-attr]  # before the command writes a byte
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"Traceback" not in errors and b"BrokenPipe" not in errors, errors.decode()


def test_keys_list_shows_allow_lists_and_limits(env: dict[str, str]) -> None:
    made = run(env, "keys", "create", "--name", "app", "--models", "echo/echo", "--rpm", "60")
    assert made.returncode == 0, made.stderr
    listed = run(env, "keys", "list")
    line = next(row for row in listed.stdout.splitlines() if " app " in row)
    assert line.endswith("models=echo/echo rpm=60")
    empty = run(env, "keys", "create", "--name", "none", "--models", "")
    assert empty.returncode == 1 and "admit nothing" in empty.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rpm", "-5"),  # before: a key that every request refused ("limit of -5")
        ("--rpm", "0"),  # before: stored as 0, which meant no limit at all
        ("--tpm", "-3"),
        ("--concurrent", "0"),
        ("--expires-days", "-1"),  # before: a key made already expired
        ("--expires-days", "0"),  # before: a key that never expires
    ],
)
def test_keys_create_refuses_limits_the_api_refuses(
    env: dict[str, str], option: str, value: str
) -> None:
    """The CLI and `POST /api/v1/keys` take the same limits: a positive number or nothing."""
    made = run(env, "keys", "create", "--name", "odd", option, value)
    assert made.returncode == 1, made
    assert made.stdout == "" and option.lstrip("-").split("-")[0] in made.stderr, made.stderr
    assert " odd " not in run(env, "keys", "list").stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--models", "echo"), ("--models", ""), ("--bindings", ""), ("--concurrent", "0")],
)
def test_a_refused_key_option_is_named_as_typed(
    env: dict[str, str], option: str, value: str
) -> None:
    """The refusal names the option given (`--models`), not the API field (`allowed_models`)."""
    made = run(env, "keys", "create", "--name", "odd", option, value)
    assert made.returncode == 1 and f"{option}:" in made.stderr, made.stderr


def test_a_key_name_with_control_characters_is_refused(env: dict[str, str]) -> None:
    """`keys list` prints names as they are: a newline or an escape in one could forge lines
    of the listing or drive the terminal."""
    made = run(env, "keys", "create", "--name", "ok\nlollms_000000000000 admin forged")
    assert made.returncode == 1 and "control characters" in made.stderr, made
    assert "forged" not in run(env, "keys", "list").stdout


def test_keys_create_warns_of_an_instance_the_config_lacks(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[bindings.local]\ntype = "echo"\n[defaults]\nttt = "local"\n')
    typo = run(env, "--config", str(path), "keys", "create", "--name", "a", "--models", "locl/m")
    assert typo.returncode == 0, typo.stderr  # kept: the instance may be added later
    assert "no enabled instance 'locl' (instances: local)" in typo.stderr, typo.stderr
    fine = run(env, "--config", str(path), "keys", "create", "--name", "b", "--bindings", "local")
    assert fine.returncode == 0 and "warning" not in fine.stderr, fine.stderr


def test_config_show_gives_each_binding_its_whole_settings(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[bindings.e]\ntype = "echo"\n[tracing]\nenabled = false\n')
    shown = json.loads(run(env, "--config", str(path), "config", "show").stdout)
    assert shown["bindings"]["e"]["delay_ms"] == 50  # the echo type's default
    assert "tracing" in shown and "tracing" not in shown["server"]


def test_keys_revoke_takes_a_pasted_key_and_names_what_an_id_is(env: dict[str, str]) -> None:
    key = run(env, "keys", "create", "--name", "leaky").stdout.strip()
    key_id = key.split("_")[1]
    revoked = run(env, "keys", "revoke", key)  # the leaked key itself, as the admin has it
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"revoked {key_id}", revoked
    assert "revoked" in run(env, "keys", "list").stdout
    unknown = run(env, "keys", "revoke", "nosuchkey")
    assert unknown.returncode == 1 and "`lollms-server keys list`" in unknown.stderr, unknown


def test_a_config_path_that_does_not_exist_is_written_and_said(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A mistyped --config or LOLLMS_CONFIG gets the first-run default, and stderr says so (an
    admin would otherwise list the keys of a new, empty database); the data dir's own default
    is written quietly (the README's first run)."""
    typo = tmp_path / "etc" / "lollms-typo.toml"
    done = run({**env, "LOLLMS_CONFIG": str(typo)}, "keys", "list")
    assert done.returncode == 0 and typo.exists()
    assert f"no config file at {typo}: wrote the default one there (first run)" in done.stderr
    quiet = run(env, "keys", "list")
    assert quiet.returncode == 0 and "no config file" not in quiet.stderr
    after = tmp_path / "after.toml"  # --config is taken after the subcommand too
    done = run(env, "keys", "list", "--config", str(after))
    assert done.returncode == 0 and after.exists(), done.stderr
