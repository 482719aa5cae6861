"""The series the shipped alerts read (deploy/prometheus/alerts.yml): instance health and failed
checks in a row, restart outcomes from zero, audit write failures, database disk room, memory
budgets, queue capacity and the process collector."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import psutil
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig
from test_observability import BODY, scrape, value

from lollms_server.app import create_app
from lollms_server.keys import CONFIG, METRICS, MONITOR, REGISTRY

Client = TestClient[Any, Any]


def two_echoes(down: bool) -> dict[str, Any]:
    return {
        "bindings": {
            "echo": {"type": "echo", "default_model": "echo", "delay_ms": 0},
            "flaky": {"type": "echo", "default_model": "echo", "down": down},
        },
        "defaults": dict(ECHO_DEFAULTS),
        "resilience": {"health_interval_s": 0},
    }


def file_size(path: Path) -> int:
    return path.stat().st_size


async def test_failed_checks_in_a_row_and_health_state(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    client = await make_client(make_config(two_echoes(down=True)))
    app = client.server.app
    monitor = app[MONITOR]
    samples = await scrape(client)
    assert value(samples, "lollms_instance_failed_checks", instance="flaky") == 0
    for expected in (1, 2, 3):
        await monitor.check_due()
        samples = await scrape(client)
        assert value(samples, "lollms_instance_failed_checks", instance="flaky") == expected
        assert value(samples, "lollms_instance_failed_checks", instance="echo") == 0
    assert value(samples, "lollms_instance_health", instance="flaky", state="down") == 1
    assert value(samples, "lollms_instance_health", instance="flaky", state="up") == 0
    assert value(samples, "lollms_instance_health", instance="echo", state="up") == 1
    flaky = next(b for b in app[REGISTRY] if b.instance_name == "flaky")
    flaky.config["down"] = False  # the backend answers again
    await monitor.check_due()
    samples = await scrape(client)
    assert value(samples, "lollms_instance_failed_checks", instance="flaky") == 0
    assert value(samples, "lollms_instance_health", instance="flaky", state="up") == 1
    assert value(samples, "lollms_instance_health", instance="flaky", state="down") == 0


async def test_restart_outcomes_exist_from_zero(client: Client) -> None:
    samples = await scrape(client)
    for outcome in ("ok", "failed", "refused"):
        labels = {"instance": "echo", "outcome": outcome}
        assert ("lollms_restarts_total", tuple(sorted(labels.items()))) in samples
        assert value(samples, "lollms_restarts_total", **labels) == 0


async def test_audit_write_failures_are_counted(client: Client) -> None:
    database = Path(client.server.app[CONFIG].database_path)
    assert (await client.post("/api/v1/generate", json=BODY)).status == 200
    samples = await scrape(client)
    assert ("lollms_audit_write_failures_total", ()) in samples
    assert value(samples, "lollms_audit_write_failures_total") == 0
    # another process makes the database refuse audit rows, as a full disk or a broken file would
    other = sqlite3.connect(database)
    other.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    other.commit()
    other.close()
    for _ in range(2):  # the request it describes still succeeds
        assert (await client.post("/api/v1/generate", json=BODY)).status == 200
    # a refused caller is still told why (401), not a 500 because its row could not be written
    refused = await client.get("/api/v1/list_models", headers={"Host": "evil.example"})
    assert refused.status == 401, await refused.text()
    samples = await scrape(client)
    assert value(samples, "lollms_audit_write_failures_total") == 3


async def test_database_size_and_disk_room(client: Client) -> None:
    database = Path(client.server.app[CONFIG].database_path)
    samples = await scrape(client)
    usage = shutil.disk_usage(database.parent)
    assert value(samples, "lollms_database_disk_size_bytes") == usage.total
    assert 0 < value(samples, "lollms_database_disk_free_bytes") <= usage.total
    assert value(samples, "lollms_database_bytes") >= file_size(database) > 0


async def test_database_series_describe_the_configured_sqlite_file(
    make_client: MakeClient, make_config: MakeConfig, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "store" / "keys.sqlite"
    elsewhere.parent.mkdir()
    raw = two_echoes(down=False)
    raw["storage"] = {"url": f"sqlite:///{elsewhere}"}
    client = await make_client(make_config(raw))
    samples = await scrape(client)
    assert value(samples, "lollms_database_bytes") >= file_size(elsewhere) > 0


def test_postgres_has_no_database_file_series(make_config: MakeConfig) -> None:
    raw = two_echoes(down=False)
    raw["storage"] = {"url": "postgresql://lollms@127.0.0.1:1/lollms"}
    app = create_app(make_config(raw))  # not started: the database is never reached
    text = app[METRICS].render().decode()
    assert "lollms_device_budget_bytes" in text
    assert "lollms_database_" not in text  # the data dir's disk is not the database's


async def test_budget_queue_capacity_and_process(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config(None)
    config.resources.queue_size = 7
    client = await make_client(config)
    samples = await scrape(client)
    assert value(samples, "lollms_device_budget_bytes", device="cpu") == (
        psutil.virtual_memory().total
    )
    # nothing loaded (remote backends only) is 0 used, not a missing series for the alert
    assert ("lollms_device_models_bytes", (("device", "cpu"),)) in samples
    assert value(samples, "lollms_device_models_bytes", device="cpu") == 0
    assert ("lollms_queue_capacity", (("instance", "echo"), ("model", "echo"))) not in samples
    assert (await client.post("/api/v1/generate", json=BODY)).status == 200
    samples = await scrape(client)
    assert value(samples, "lollms_queue_capacity", instance="echo", model="echo") == 7
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_open_fds") > 0


async def test_ram_budget_is_the_device_budget(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    raw = two_echoes(down=False)
    raw["resources"] = {"ram_budget": "1GiB"}
    client = await make_client(make_config(raw))
    samples = await scrape(client)
    assert value(samples, "lollms_device_budget_bytes", device="cpu") == 1024**3
