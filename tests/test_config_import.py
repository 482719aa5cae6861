"""`lollms-server config import`: an upstream lollms_server configuration tree (shaped after
upstream's ConfigGuard main config, its per-instance binding files and a personality folder)
becomes lollms.toml; a real server started on it serves the instances, the personality and the
imported keys (real processes)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lollms_server.testing import free_port
from lollms_server.testing.fixtures import wait_for_http
from lollms_server.testing.process import SERVER_COMMAND, server_env

OLD_KEYS = ("upstream-plain-key-1", "second_plain_key")
MAIN_CONFIG = f"""\
__version__: 0.3.0
server:
  host: 0.0.0.0
  port: 9601
  allowed_origins: ["http://localhost:5173", "null"]
paths:
  config_base_dir: lollms_configs
  instance_bindings_folder: bindings
  personalities_folder: personal/personalities
  bindings_folder: personal/bindings
  functions_folder: personal/functions
  models_folder: models
  example_personalities_folder: zoos/personalities
security:
  allowed_api_keys: {json.dumps(list(OLD_KEYS))}
  encryption_key: null
defaults:
  ttt_binding: my_dummy
  ttt_model: dummy_model
  tti_binding: my_gemini
  default_context_size: 4096
  default_max_output_tokens: 512
bindings_map:
  my_dummy: dummy_binding
  my openai: openai_binding
  my_gemini: gemini_binding
resource_manager:
  gpu_strategy: semaphore
  gpu_limit: 1
  queue_timeout: 90
webui:
  enable_ui: false
logging:
  log_level: INFO
"""
INSTANCES = {
    "my_dummy.yaml": "type: dummy_binding\nbinding_instance_name: my_dummy\n",
    "my openai.yaml": (
        "type: openai_binding\nbinding_instance_name: my openai\napi_key: sk-upstream\n"
        "base_url: http://127.0.0.1:9/v1\ndefault_model: gpt-4o-mini\ncontext_size: 128000\n"
    ),
    "my_gemini.yaml": "type: gemini_binding\napi_key: g\n",
}
PERSONALITY = (
    "name: Harbor Pilot\nauthor: upstream user\nversion: 1.0.0\ncategory: fun\n"
    "personality_description: Guides ships\npersonality_conditioning: You guide ships.\n"
)


@dataclass
class Imported:
    """The import's output and the server started on its config."""

    upstream: Path
    config: Path
    stdout: str
    stderr: str
    url: str
    log: Path


def upstream_tree(root: Path) -> Path:
    """An upstream server folder as its docs lay it out (lollms_configs/, personal/, zoos/)."""
    configs = root / "lollms_configs"
    (configs / "bindings").mkdir(parents=True)
    (configs / "main_config.yaml").write_text(MAIN_CONFIG, encoding="utf-8")
    for name, text in INSTANCES.items():
        (configs / "bindings" / name).write_text(text, encoding="utf-8")
    pilot = root / "zoos" / "personalities" / "fun" / "harbor_pilot"
    pilot.mkdir(parents=True)
    (pilot / "config.yaml").write_text(PERSONALITY, encoding="utf-8")
    (root / "personal" / "personalities").mkdir(parents=True)
    (root / "personal" / "functions").mkdir(parents=True)
    return root


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, to completion."""
    return subprocess.run(
        [*SERVER_COMMAND, *args],
        env=server_env(data),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    """Import the upstream tree once, then run a server on the result."""
    base = tmp_path_factory.mktemp("import")
    upstream = upstream_tree(base / "upstream_server")
    config, data = base / "ours" / "lollms.toml", base / "ours" / "data"
    done = cli(data, "--config", str(config), "config", "import", str(upstream))
    assert done.returncode == 0, done.stderr
    port, log = free_port(), base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *SERVER_COMMAND,
                "--config",
                str(config),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=server_env(data),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_http(f"{url}/api/v1/health", timeout_s=60), log.read_text()
        yield Imported(upstream, config, done.stdout, done.stderr, url, log)
    finally:
        process.terminate()
        process.wait(15)


def call(
    imported: Imported, path: str, key: str | None = None, body: Any = None
) -> tuple[int, Any]:
    """A request as a remote client makes it (not local: a public Host name)."""
    headers = {"Host": "lollms.example", "Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(imported.url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def new_keys(stdout: str) -> list[str]:
    """The keys the import printed (`  upstream-<n>: lollms_...`)."""
    return [
        line.split(": ", 1)[1].strip()
        for line in stdout.splitlines()
        if line.strip().startswith("upstream-") and ": lollms_" in line
    ]


def test_report_names_mapped_unmapped_and_changed(imported: Imported) -> None:
    out = imported.stdout
    assert "binding instance 'my_dummy' (dummy_binding) -> [bindings.my_dummy] type 'echo'" in out
    assert "[bindings.my-openai] type 'openai' (renamed 'my-openai'" in out
    assert "'my_gemini': upstream binding type 'gemini_binding' has no counterpart" in out
    assert "defaults.tti_binding 'my_gemini': that instance was not imported" in out
    assert "'my openai'.context_size: the openai binding has no such setting" in out
    assert "server.allowed_origins 'null'" in out and "resource_manager.gpu_limit" in out
    assert "default_max_output_tokens: upstream's one global default" in out
    written = imported.config.read_text()
    assert 'ttt = "my_dummy"' in written and "default_max_tokens = 512" in written
    assert 'cors_origins = ["http://localhost:5173"]' in written
    assert "queue_timeout_s = 90.0" in written


def test_plain_upstream_keys_never_written_or_printed(imported: Imported) -> None:
    keys = new_keys(imported.stdout)
    assert len(keys) == len(OLD_KEYS) and len(set(keys)) == len(keys)
    everything = imported.stdout + imported.stderr + imported.config.read_text()
    everything += imported.log.read_text(errors="replace")
    assert not any(old in everything for old in OLD_KEYS)
    assert not any(key in imported.log.read_text(errors="replace") for key in keys)


def test_imported_key_works_and_the_old_plain_key_does_not(imported: Imported) -> None:
    key = new_keys(imported.stdout)[0]
    assert call(imported, "/v1/models")[0] == 401
    assert call(imported, "/v1/models", OLD_KEYS[0])[0] == 401
    status, body = call(imported, "/v1/models", key)
    assert status == 200 and "my_dummy/echo" in [m["id"] for m in body["data"]]
    status, body = call(
        imported,
        "/v1/chat/completions",
        key,
        {"model": "my_dummy/echo", "messages": [{"role": "user", "content": "ahoy"}]},
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == "ahoy"


def test_instances_exist_and_upstream_personalities_are_listed(imported: Imported) -> None:
    key = new_keys(imported.stdout)[0]
    status, body = call(imported, "/api/v1/list_active_bindings", key)
    assert status == 200
    active = body.get("bindings", body)
    assert {"my_dummy", "my-openai"} <= set(active)
    status, body = call(imported, "/api/v1/list_personalities", key)
    assert status == 200 and "Harbor Pilot" in json.dumps(body)
    assert str(imported.upstream / "zoos" / "personalities") in imported.config.read_text()


def test_refuses_to_overwrite_without_force(imported: Imported, tmp_path: Path) -> None:
    before = imported.config.read_text()
    again = cli(tmp_path / "data", "--config", str(imported.config), "config", "import",
                str(imported.upstream))  # fmt: skip
    assert again.returncode == 1 and "use --force" in again.stderr
    assert imported.config.read_text() == before
    target = tmp_path / "lollms.toml"
    target.write_text("# mine\n")
    main_file = imported.upstream / "lollms_configs" / "main_config.yaml"
    forced = cli(tmp_path / "data", "--config", str(target), "config", "import", str(main_file),
                 "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "[bindings.my_dummy]" in target.read_text()


def test_older_single_config_toml(tmp_path: Path) -> None:
    root = tmp_path / "old_server"
    (root / "personal" / "personalities").mkdir(parents=True)
    (root / "config.toml").write_text(
        '[server]\nhost = "127.0.0.1"\nport = 9600\n'
        '[paths]\npersonalities_folder = "personal/personalities"\n'
        "[security]\nallowed_api_keys = []\n"
        '[defaults]\nttt_binding = "dummy"\n'
        '[bindings.dummy]\ntype = "dummy_binding"\n'
        '[bindings.far]\ntype = "hf_binding"\n'
    )
    target = tmp_path / "out" / "lollms.toml"
    done = cli(tmp_path / "data", "--config", str(target), "config", "import", str(root))
    assert done.returncode == 0, done.stderr
    written = target.read_text()
    assert "port = 9600" in written and '[bindings.dummy]\ntype = "echo"' in written
    assert str(root / "personal" / "personalities") in written
    assert "'far': upstream binding type 'hf_binding' has no counterpart" in done.stdout
    assert "allowed_api_keys" not in done.stdout  # no keys, no key lines


def test_missing_upstream_config_is_a_clear_error(tmp_path: Path) -> None:
    done = cli(tmp_path / "data", "--config", str(tmp_path / "x.toml"), "config", "import",
               str(tmp_path))  # fmt: skip
    assert done.returncode == 2 and "no upstream config found" in done.stderr
    assert not (tmp_path / "x.toml").exists()


def test_odd_upstream_values_are_reported_not_crashed(tmp_path: Path) -> None:
    configs = tmp_path / "odd" / "lollms_configs"
    configs.mkdir(parents=True)
    (configs / "main_config.yaml").write_text(
        "server: {host: 127.0.0.1, port: not-a-port}\n"
        "security: {allowed_api_keys: single-plain-secret}\n"
        "bindings_map: [a, b]\ndefaults: {ttt_binding: 5}\npaths: {personalities_folder: 7}\n"
    )
    target = tmp_path / "out.toml"
    done = cli(tmp_path / "data", "--config", str(target), "config", "import", str(configs))
    assert done.returncode == 0, done.stderr
    assert "server.port 'not-a-port': not a port number" in done.stdout
    assert "allowed_api_keys: not a list" in done.stdout
    assert "defaults.ttt_binding 5: that instance was not imported" in done.stdout
    assert "single-plain-secret" not in done.stdout + done.stderr + target.read_text()
    (configs / "main_config.yaml").write_text("server: [unclosed\n")
    broken = cli(tmp_path / "data", "--config", str(tmp_path / "b.toml"), "config", "import",
                 str(configs))  # fmt: skip
    assert broken.returncode == 2 and "not readable as yaml" in broken.stderr
    assert "Traceback" not in broken.stderr and not (tmp_path / "b.toml").exists()


def test_the_decorator_the_report_names_registers_an_upstream_function(
    imported: Imported,
) -> None:
    """The report tells how to mark upstream's functions; done as it says, one is served."""
    advice = re.search(r"marked with @([\w.]+)(?: \(from ([\w.]+) import \w+)?", imported.stdout)
    assert advice, imported.stdout
    decorator, module = advice.group(1), advice.group(2)
    imports = (
        f"from {module} import {decorator}" if module else f"import {decorator.rsplit('.', 1)[0]}"
    )
    functions = imported.upstream / "personal" / "functions"
    (functions / "tides.py").write_text(
        f"{imports}\n\n\n@{decorator}\ndef tide_table(port: str) -> str:\n"
        '    """The next high tide."""\n    return f"high tide at {port}: 06:12"\n',
        encoding="utf-8",
    )
    local = urllib.request.Request(  # this machine: the local admin may reload
        f"{imported.url}/api/v1/reload_personalities",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(local, timeout=60) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{imported.url}/api/v1/list_functions", timeout=60) as response:
        listed = json.loads(response.read())
    assert "tide_table" in listed["functions"], listed["problems"]
