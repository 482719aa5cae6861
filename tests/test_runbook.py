"""The runbook (`docs/operations.md`) rehearsed: each procedure's commands, read out of the doc's
own blocks, run against a real server process (one per module, restarted by the doc's drain and
start commands; a second one only for the restore). See runbook_doc.py for how blocks run."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from runbook_doc import RUNBOOK, operator_env, run_block, runbook_blocks, scripts, start_block

from lollms_server.testing import free_port, wait_for_http
from lollms_server.testing.postgres import postgres_bin, postgres_server
from lollms_server.testing.process import toml_table

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lollms-server.json"
ECHO = '[bindings.echo]\ntype = "echo"\ndelay_ms = 30\n'
# Blocks the rehearsal does not run, each with the reason.
NOT_RUN = {"variables": "sets production paths; the rehearsal sets the same variables itself"}
KEY = re.compile(r"\blollms_[A-Za-z0-9_-]+")


def key_id(key: str) -> str:
    """The id of a key: the 12 characters after `lollms_`."""
    return key.split("_")[1]


class Operated:
    """A server run the runbook's way: its config, data dir and address in the variables."""

    def __init__(self, folder: Path, storage_url: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.config = folder / "lollms.toml"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.use_storage(storage_url)
        self.values = {
            "LOLLMS_CONFIG": str(self.config),
            "LOLLMS_DATA_DIR": str(folder / "data"),
            "LOLLMS_URL": f"http://127.0.0.1:{self.port}",
            "BACKUP": str(folder.parent / "backups" / "lollms.sqlite"),
            "MODEL": "echo/echo",
        }

    def use_storage(self, url: str | None) -> None:
        """(Re)write the config: keys and audit in the data dir's SQLite, or at `url`."""
        server = {"host": "127.0.0.1", "port": self.port, "drain_timeout_s": 30}
        storage = toml_table("storage", {"url": url}) if url else ""
        security = toml_table("security", {"local_access": False})
        self.config.write_text(toml_table("server", server) + security + storage + ECHO)

    def run(self, name: str, **values: str) -> str:
        """Run the runbook block `name` against this server."""
        return run_block(name, {**self.values, **values})

    def create_key(self, name: str, role: str = "user") -> str:
        """A new key made by the runbook's own `keys create` block (plus a role)."""
        values = {**self.values, "KEY_NAME": name}
        script = scripts()["rotate-create"] + (f" --role {role}" if role != "user" else "")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=operator_env(values),
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = KEY.search(done.stdout)
        assert done.returncode == 0 and found, done.stdout + done.stderr
        return found.group(0)

    def start(self) -> None:
        """The runbook's start command, then its check."""
        self.process = start_block("start", self.values, self.folder / "server.log")
        self.values["LOLLMS_PID"] = str(self.process.pid)
        if not wait_for_http(f"{self.values['LOLLMS_URL']}/api/v1/health", timeout_s=60):
            raise AssertionError(self.log())
        ready = self.run("check-started")
        assert '"ready": true' in ready, ready

    def drain(self) -> int:
        """The runbook's drain command; the server's exit status."""
        assert self.process is not None
        process = self.process
        waiter = threading.Thread(target=process.wait, daemon=True)
        waiter.start()  # reaps the server, so the block's `kill -0` loop sees it gone
        self.run("drain")
        waiter.join(60)
        self.process = None
        return int(process.returncode)

    def kill(self) -> None:
        """Kill the server if it still runs (the end of the module)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)

    def status(self, key: str) -> int:
        """The runbook's key check, as a status."""
        return int(self.run("check-key", KEY=key).strip())

    def chat(self, key: str) -> str:
        """One whole chat with `key`; its request id."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = {"model": "echo/echo", "messages": [{"role": "user", "content": "hello"}]}
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert reply.status == 200, reply.status
        return str(reply.getheader("X-Request-Id"))

    def log(self) -> str:
        """The server's log so far."""
        return (self.folder / "server.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operated]:
    """One server started by the runbook's command, with an admin key in `ADMIN_KEY`."""
    server = Operated(tmp_path_factory.mktemp("runbook") / "replica")
    server.values["ADMIN_KEY"] = server.create_key("prometheus", role="admin")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_every_block_is_rehearsed_alerts_and_panels_have_sections() -> None:
    blocks = runbook_blocks()
    untagged = [b.line for b in blocks if b.language in ("bash", "sh", "") and b.name is None]
    assert untagged == [], f"shell blocks without a rehearsal name at lines {untagged}"
    names = [b.name for b in blocks if b.name]
    assert len(names) == len(set(names)), names
    rehearsed = {name for name in names if name not in NOT_RUN}
    source = Path(__file__).read_text(encoding="utf-8")
    unrun = [n for n in rehearsed if f'"{n}"' not in source and not n.startswith("confirm-")]
    assert unrun == [], f"blocks this test never runs: {unrun}"
    text = RUNBOOK.read_text(encoding="utf-8")
    alerts = [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for alert in alerts:
        assert f"\n### {alert}\n" in text, f"no runbook section for {alert}"
        assert f"confirm-{alert}" in names, f"no confirm command for {alert}"
    dashboards = " ".join(
        text.split("## Reading the dashboards", 1)[1].split("\n## ", 1)[0].split()
    )
    panels = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    missing = [t for t in panels if f"**{t.split(' (')[0]}**" not in dashboards]
    assert missing == [], f"dashboard panels the runbook does not explain: {missing}"


def test_alert_confirm_commands_answer(ops: Operated) -> None:
    ops.chat(ops.values["ADMIN_KEY"])  # a routed request: the request and queue series exist
    names = [name for name in scripts() if name.startswith("confirm-")]
    for name in names:
        output = ops.run(name)
        assert output.strip(), f"{name} printed nothing"
    latency = ops.run("confirm-LollmsHighLatency")
    assert re.search(r"(?i)^x-lollms-overhead-ms: \d", latency, re.MULTILINE), latency
    instance = ops.run("confirm-LollmsInstanceDown")
    assert 'lollms_instance_failed_checks{instance="echo"} 0.0' in instance, instance


def test_rotate_a_key(ops: Operated) -> None:
    old = ops.create_key("app")
    assert ops.status(old) == 200
    new = ops.create_key("app-rotated")
    assert ops.status(new) == 200
    ops.run("rotate-revoke", OLD_KEY_ID=key_id(old))
    assert ops.status(old) == 401
    assert ops.status(new) == 200


def test_a_leaked_key_is_revoked_and_its_requests_found(ops: Operated) -> None:
    leaked = ops.create_key("leaky")
    other = ops.create_key("bystander")
    request_ids = [ops.chat(leaked) for _ in range(3)]
    bystander_request = ops.chat(other)
    ops.run("leak-revoke", LEAKED_KEY_ID=key_id(leaked))
    assert ops.status(leaked) == 401
    audit = ops.run("leak-audit", LEAKED_KEY_ID=key_id(leaked))
    for request_id in request_ids:
        assert request_id in audit, audit
    assert bystander_request not in audit
    assert audit.count("generation") >= 3, audit


def test_backup_restore_onto_a_fresh_data_dir_and_a_schema_rollback(ops: Operated) -> None:
    before = ops.create_key("before-backup")
    ops.run("backup")
    after = ops.create_key("after-backup")
    fresh = Operated(ops.folder.parent / "restored")
    fresh.values["BACKUP"] = ops.values["BACKUP"]
    fresh.run("restore")
    at, newest = re.findall(r"\d+", fresh.run("db-current"))[:2]
    assert at == newest, "a backup of a running server is at the newest revision"
    previous = str(int(newest) - 1)  # the rollback of an upgrade by one migration, and again
    fresh.run("db-downgrade", PREVIOUS_REVISION=previous)
    assert fresh.run("db-current").split()[0] == previous
    fresh.run("db-upgrade")
    assert fresh.run("db-current").split()[0] == newest
    try:
        fresh.start()
        assert fresh.status(before) == 200
        assert fresh.status(after) == 401
        assert fresh.drain() == 0
    finally:
        fresh.kill()


def test_add_a_backend_then_remove_it(ops: Operated) -> None:
    original = ops.config.read_text(encoding="utf-8")
    ops.run("add-backend")
    assert ops.drain() == 0, ops.log()
    ops.start()
    listed = json.loads(ops.run("check-backend"))["bindings"]
    assert listed["extra"]["health"]["state"] == "up", listed
    ops.config.write_text(original, encoding="utf-8")  # "delete its table"
    assert ops.drain() == 0, ops.log()
    ops.start()
    assert "extra" not in json.loads(ops.run("check-backend"))["bindings"]


def test_drain_lets_a_running_stream_finish(ops: Operated) -> None:
    words = [f"w{i}" for i in range(40)]  # echo/slow: 40 tokens x 30 ms
    got: list[str] = []

    def stream() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ops.port, timeout=60)
        messages = [{"role": "user", "content": " ".join(words)}]
        body = {"model": "echo/slow", "messages": messages, "stream": True}
        headers = {"Authorization": f"Bearer {ops.values['ADMIN_KEY']}"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        reply = conn.getresponse()
        got.append(str(reply.status))
        got.append(reply.read().decode())
        conn.close()

    client = threading.Thread(target=stream)
    client.start()
    _wait_for_stream(ops)
    assert ops.drain() == 0, ops.log()
    client.join(60)
    status, body = got
    text = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in body.splitlines()
        if line.startswith("data: {")
    )
    assert status == "200" and text.split() == words, body[-500:]
    assert body.rstrip().endswith("data: [DONE]"), body[-200:]


def _wait_for_stream(ops: Operated) -> None:
    """Return once the server has a generation running."""
    metric = re.compile(r"^lollms_active_generations\{[^}]*\} [1-9]", re.MULTILINE)
    for _ in range(200):
        if metric.search(ops.run("confirm-LollmsQueueNearlyFull")):
            return
        time.sleep(0.05)
    raise AssertionError("the stream never started")


def test_postgres_leak_audit_then_backup_and_restore(tmp_path: Path) -> None:
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("postgresql is not installed")
        pytest.skip("postgresql is not installed")
    with postgres_server() as postgres:
        url = postgres.create_database("lollms")
        server = Operated(tmp_path / "replica", storage_url=url)
        server.values["LOLLMS_STORAGE_URL"] = url
        server.values["BACKUP"] = str(tmp_path / "backups" / "lollms")
        leaked = server.create_key("leaky")
        server.start()
        try:
            request_ids = [server.chat(leaked) for _ in range(2)]
            server.run("leak-revoke", LEAKED_KEY_ID=key_id(leaked))
            assert server.status(leaked) == 401
            audit = server.run("leak-audit-postgres", LEAKED_KEY_ID=key_id(leaked))
            assert all(request_id in audit for request_id in request_ids), audit
            before = server.create_key("before-backup")
            server.run("backup-postgres")
            after = server.create_key("after-backup")
            assert server.status(after) == 200
            restored = postgres.create_database("restored")
            server.run("restore-postgres", LOLLMS_STORAGE_URL=restored)
            assert server.drain() == 0, server.log()
            server.use_storage(restored)
            server.start()
            assert server.status(before) == 200
            assert server.status(after) == 401
            assert server.status(leaked) == 401
            assert server.drain() == 0, server.log()
        finally:
            server.kill()
