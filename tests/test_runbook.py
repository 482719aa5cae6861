"""The runbook (`docs/operations.md`) rehearsed: each procedure's commands, read out of the doc's
own blocks, run against a real server process (one per module, restarted by the doc's drain and
start commands; a second one only for the restore). lollms_server.testing.runbook runs blocks."""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lollms_server.testing.postgres import postgres_bin, postgres_server
from lollms_server.testing.runbook import RUNBOOK, RunbookServer, key_id, runbook_blocks, scripts

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lollms-server.json"
NODES = "test_runbook_nodes.py"  # the node procedures need lollms-remote: rehearsed there
# Blocks the rehearsal does not run, each with the reason.
NOT_RUN = {"variables": "sets production paths; the rehearsal sets the same variables itself"}


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunbookServer]:
    """One server started by the runbook's command, with an admin key in `ADMIN_KEY`."""
    server = RunbookServer(tmp_path_factory.mktemp("runbook") / "replica")
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
    rehearsals = [
        Path(__file__),
        ROOT / "core" / "lollms_server" / "testing" / "runbook.py",  # start, drain, key checks
        ROOT / "plugins" / "lollms-remote" / "tests" / NODES,
    ]
    source = "".join(path.read_text(encoding="utf-8") for path in rehearsals)
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


def test_alert_confirm_commands_answer(ops: RunbookServer) -> None:
    ops.chat(ops.values["ADMIN_KEY"])  # a routed request: the request and queue series exist
    names = [name for name in scripts() if name.startswith("confirm-")]
    for name in names:
        output = ops.run(name)
        assert output.strip(), f"{name} printed nothing"
    latency = ops.run("confirm-LollmsHighLatency")
    assert re.search(r"(?i)^x-lollms-overhead-ms: \d", latency, re.MULTILINE), latency
    instance = ops.run("confirm-LollmsInstanceDown")
    assert 'lollms_instance_failed_checks{instance="echo"} 0.0' in instance, instance


def test_rotate_a_key(ops: RunbookServer) -> None:
    old = ops.create_key("app")
    assert ops.status(old) == 200
    new = ops.create_key("app-rotated")
    assert ops.status(new) == 200
    ops.run("rotate-revoke", OLD_KEY_ID=key_id(old))
    assert ops.status(old) == 401
    assert ops.status(new) == 200


def test_a_leaked_key_is_revoked_and_its_requests_found(ops: RunbookServer) -> None:
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


def test_backup_restore_onto_a_fresh_data_dir_and_a_schema_rollback(ops: RunbookServer) -> None:
    before = ops.create_key("before-backup")
    ops.run("backup")
    after = ops.create_key("after-backup")
    fresh = RunbookServer(ops.folder.parent / "restored")
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


def test_add_a_backend_then_remove_it(ops: RunbookServer) -> None:
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


def test_the_add_backend_check_refuses_a_table_serve_would_refuse(ops: RunbookServer) -> None:
    original = ops.config.read_text(encoding="utf-8")
    for table, named in (
        ('type = "echo"\ndelay_msec = 5', "bindings.typo.delay_msec: unknown key"),
        ('type = "ecko"', "bindings.typo.type: got 'ecko'"),
    ):
        ops.config.write_text(f"{original}\n[bindings.typo]\n{table}\n", encoding="utf-8")
        try:
            with pytest.raises(AssertionError, match=re.escape(named)):
                ops.run("add-backend")
        finally:
            ops.config.write_text(original, encoding="utf-8")


def test_drain_lets_a_running_stream_finish(ops: RunbookServer) -> None:
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


def _wait_for_stream(ops: RunbookServer) -> None:
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
        server = RunbookServer(tmp_path / "replica", storage_url=url)
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
