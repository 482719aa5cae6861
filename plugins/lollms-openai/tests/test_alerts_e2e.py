"""The shipped monitoring, end to end: a real Prometheus scrapes a real lollms-server (with an
admin key) whose `openai` binding fronts another lollms-server; a real Alertmanager routes to a
webhook this test listens on. Killing the backend fires LollmsInstanceDown at the webhook;
bringing it back on the same port resolves it. Every query of the Grafana dashboard returns data
from that Prometheus.

The configs are the shipped ones under deploy/, with ports, paths and intervals templated.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from lollms_server.testing import free_port, wait_for_http

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CLI = [sys.executable, "-c", "from lollms_server.cli import main; raise SystemExit(main())"]
FAST = "1s"  # scrape and evaluation interval, Alertmanager group wait/interval
WAIT_S = 40.0  # the most any step may take (the whole test runs in about 20 s)

UPSTREAM_CONFIG = """\
[server]
port = {port}
data_dir = "{data_dir}"
log_level = "warning"

[bindings.echo]
type = "echo"
delay_ms = 0

[defaults]
ttt = "echo"
"""

GATEWAY_CONFIG = """\
[server]
port = {port}
data_dir = "{data_dir}"
log_level = "warning"

[bindings.llm]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
check_models = false
health_timeout_s = 2
retries = 0

[defaults]
ttt = "llm"

[resilience]
health_interval_s = 0.2

[security]
local_access = false    # Prometheus on this machine still needs its key
"""


def binary(name: str) -> str:
    """The path of a Debian monitoring binary; where CI is set, missing is a failure."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Webhook:
    """An HTTP server collecting Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, alertname: str, status: str) -> dict[str, Any]:
        """The first notification about `alertname` with `status` (firing or resolved)."""
        deadline = time.monotonic() + WAIT_S
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                note = self.received.get(timeout=left)
            except queue.Empty:
                break
            for alert in note["alerts"]:
                seen.append((alert["labels"]["alertname"], alert["status"]))
                if alert["labels"]["alertname"] == alertname and alert["status"] == status:
                    return dict(alert)
        raise AssertionError(f"no {status} {alertname} within {WAIT_S}s; got {seen}")


class Processes:
    """Child processes of the test, logged to files, killed at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.running[name] = process
        return process

    def wait_http(self, name: str, url: str) -> None:
        if not wait_for_http(url, timeout_s=WAIT_S):
            self.stop_all()
            tail = (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{name} did not answer {url}: {tail}")

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.running.clear()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start children; all of them are stopped after the test."""
    children = Processes(tmp_path)
    try:
        yield children
    finally:
        children.stop_all()


def prometheus_config(folder: Path, gateway: int, alertmanager: int, key_file: Path) -> Path:
    """deploy/prometheus/prometheus.yml with this test's ports, key, rules and 1s intervals."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=FAST, evaluation_interval=FAST)
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager}"]}
    ]
    (job,) = (j for j in config["scrape_configs"] if j["job_name"] == "lollms-server")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway}"]}]
    job["authorization"]["credentials_file"] = str(key_file)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def alertmanager_config(folder: Path, webhook_url: str) -> Path:
    """deploy/alertmanager/alertmanager.yml sending to the test's webhook without waiting."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait=FAST, group_interval=FAST)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    path = folder / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the Grafana dashboard."""
    dashboard = json.loads((DEPLOY / "grafana" / "lollms-server.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def chat(gateway: str, key: str, *, stream: bool = False) -> int:
    """One chat completion through the gateway; its status."""
    body = {"model": "llm/echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"{gateway}/v1/chat/completions",
        data=json.dumps({**body, "stream": stream}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_until(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        time.sleep(0.2)


def test_backend_down_fires_and_resolves_instance_down(
    tmp_path: Path, processes: Processes
) -> None:
    prometheus_bin, alertmanager_bin = binary("prometheus"), binary("prometheus-alertmanager")
    ports = {name: free_port() for name in ("upstream", "gateway", "prometheus", "alertmanager")}
    upstream_toml = tmp_path / "upstream.toml"
    upstream_toml.write_text(
        UPSTREAM_CONFIG.format(port=ports["upstream"], data_dir=tmp_path / "upstream")
    )
    gateway_toml = tmp_path / "gateway.toml"
    gateway_toml.write_text(
        GATEWAY_CONFIG.format(
            port=ports["gateway"], data_dir=tmp_path / "gateway", upstream=ports["upstream"]
        )
    )
    created = subprocess.run(
        [*CLI, "--config", str(gateway_toml), "keys", "create", "--name", "prometheus",
         "--role", "admin"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    key = created.stdout.strip()
    key_file = tmp_path / "prometheus.key"
    key_file.write_text(key)
    webhook = Webhook()

    upstream_command = [*CLI, "--config", str(upstream_toml), "serve"]
    processes.start("upstream", upstream_command)
    processes.start("gateway", [*CLI, "--config", str(gateway_toml), "serve"])
    processes.start("alertmanager", [
        alertmanager_bin, f"--config.file={alertmanager_config(tmp_path, webhook.url)}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address=",
    ])  # fmt: skip
    prometheus_yml = prometheus_config(tmp_path, ports["gateway"], ports["alertmanager"], key_file)
    processes.start("prometheus", [
        prometheus_bin, f"--config.file={prometheus_yml}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
    ])  # fmt: skip
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    processes.wait_http("upstream", f"http://127.0.0.1:{ports['upstream']}/api/v1/health")
    processes.wait_http("gateway", f"{gateway}/api/v1/health")
    processes.wait_http("alertmanager", f"http://127.0.0.1:{ports['alertmanager']}/-/ready")
    processes.wait_http("prometheus", f"{prometheus}/-/ready")

    # the scrape needs the key: without it /metrics is refused, and Prometheus's target is up
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{gateway}/metrics", timeout=10)
    assert refused.value.code == 401
    wait_until("the gateway is scraped", lambda: query(prometheus, 'up{job="lollms-server"} == 1'))
    assert chat(gateway, key) == 200
    assert chat(gateway, key, stream=True) == 200

    processes.kill("upstream")
    fired = webhook.wait_for("LollmsInstanceDown", "firing")
    assert fired["labels"]["binding"] == "llm"
    assert fired["labels"]["severity"] == "critical"
    assert fired["labels"]["instance"] == f"127.0.0.1:{ports['gateway']}"
    assert chat(gateway, key) >= 500  # the backend is gone: a 5xx for the dashboard's error share

    processes.start("upstream", upstream_command)  # the same port again
    resolved = webhook.wait_for("LollmsInstanceDown", "resolved")
    assert resolved["labels"]["binding"] == "llm"
    assert chat(gateway, key) == 200

    # each panel's query returns data (a new series needs a second scrape before rate() has it)
    def without_data() -> list[tuple[str, str]]:
        return [
            (title, expr)
            for title, expr in dashboard_queries()
            if not query(
                prometheus, expr.replace("$__rate_interval", "1m").replace("$instance", ".+")
            )
        ]

    deadline = time.monotonic() + WAIT_S
    while (empty := without_data()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not empty, f"dashboard queries without data: {empty}"
    assert len(dashboard_queries()) >= 20
