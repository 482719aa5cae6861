"""A planned rolling restart does not page: while a node drains (SIGTERM, a generation still
running), the gateway's health checks of it, re-checked at every readiness poll as HAProxy polls,
find it draining, not failing. A real Prometheus with the shipped scrape config and alert rules
(deploy/prometheus, 1 s intervals) scrapes the gateway: `lollms_instance_draining` is 1, the
failed-check count stays 0 and LollmsInstanceDown never fires during the drain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from lollms_server.testing import free_port, wait_for_http
from lollms_server.testing.process import SERVER_COMMAND, server_env
from lollms_server.testing.replica import Replica

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
WAIT_S = 60.0
NODE = """[server]\nport = {port}\ndrain_timeout_s = 30\nlog_level = "warning"
[bindings.echo]\ntype = "echo"\ndelay_ms = 1500\n"""
GATEWAY = """[server]\nport = {port}\nlog_level = "warning"
[security]\nlocal_access = false
[resilience]\nhealth_interval_s = 0.2
[bindings.node]\ntype = "lollms"\nbase_url = "http://127.0.0.1:{node}"\nhealth_timeout_s = 2
"""


def prometheus_binary() -> str:
    """Debian's prometheus; where CI is set, missing is a failure."""
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    """A range query's result matrix (1 s steps)."""
    args = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{args}", timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(value) for series in result for _, value in series["values"]]


def test_a_draining_node_does_not_fire_instance_down(tmp_path: Path) -> None:
    binary = prometheus_binary()
    node = Replica("node", tmp_path / "node", tmp_path / "node" / "data")
    gateway = Replica("gateway", tmp_path / "gateway", tmp_path / "gateway" / "data")
    for replica, text in ((node, NODE), (gateway, GATEWAY)):
        replica.folder.mkdir(parents=True)
        (replica.folder / "lollms.toml").write_text(text.format(port=replica.port, node=node.port))
    created = subprocess.run(
        [*SERVER_COMMAND, "--config", str(gateway.folder / "lollms.toml"), "keys", "create",
         "--name", "prometheus", "--role", "admin"],
        capture_output=True, text=True, check=True, timeout=60, env=server_env(gateway.data_dir),
    )  # fmt: skip
    key_file = tmp_path / "prometheus.key"
    key_file.write_text(created.stdout.strip().splitlines()[0])
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    config.pop("alerting")
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway.port}"]}]
    job["authorization"]["credentials_file"] = str(key_file)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    processes: list[subprocess.Popen[bytes]] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        node.start(node.folder / "lollms.toml")
        gateway.start(gateway.folder / "lollms.toml")
        processes.append(subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        assert wait_for_http(f"{url}/-/ready", timeout_s=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not gateway.ready():  # the node checked up through the gateway
            assert time.monotonic() < deadline, gateway.log() + node.log()
            time.sleep(0.2)
        up = 'lollms_instance_health{binding="node", state="up"}'
        while not values(query_range(url, up, time.time() - 2, time.time())):
            assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
            time.sleep(0.5)

        body = json.dumps(
            {"model": "echo/slow", "messages": [{"role": "user", "content": "a b c d e"}]}
        )
        held = urllib.request.Request(
            f"http://127.0.0.1:{node.port}/v1/chat/completions", data=body.encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        answered: list[int] = []
        slow = threading.Thread(
            target=lambda: answered.append(urllib.request.urlopen(held, timeout=60).status)
        )
        slow.start()
        time.sleep(1.0)  # the generation is running: the drain waits for it
        assert node.process is not None
        drained_from = time.time()
        node.process.terminate()
        while node.running():  # HAProxy polls the gateway's readiness
            gateway.ready()
            time.sleep(0.3)
        drained_to = time.time()
        slow.join(30)
        assert answered == [200], node.log()
        assert drained_to - drained_from > 5, "the drain was too short to show anything"
        time.sleep(3)  # two more scrapes and evaluations
        window = (drained_from + 1, drained_to - 1)
        alerts = query_range(url, 'ALERTS{alertname="LollmsInstanceDown"}', *window)
        assert alerts == [], alerts
        failed = values(query_range(url, 'lollms_instance_failed_checks{binding="node"}', *window))
        assert failed and max(failed) == 0.0, failed
        draining = values(query_range(url, 'lollms_instance_draining{binding="node"}', *window))
        assert draining and max(draining) == 1.0, draining
        logged = (gateway.folder / "server.log").read_text()
        assert "instance node is now down (its server drains: a planned stop)" in logged
    finally:
        for replica in (node, gateway):
            if replica.running():
                replica.kill()
        for process in processes:
            process.terminate()
            process.wait(30)
