"""Series the shipped alerts need: instance health, database disk room, memory budgets, queue
capacity; known label sets of counters start at 0 so an alert's `increase()` sees the first
event."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from .bindings import Binding
from .metrics import Metrics
from .resources.lifecycle import Lifecycle
from .resources.monitor import HealthMonitor
from .resources.scheduler import Scheduler

HEALTH_STATES = ("up", "degraded", "down")
RESTART_OUTCOMES = ("ok", "failed", "refused")
Samples = list[tuple[dict[str, str], float]]


def export_operations(
    metrics: Metrics,
    instances: Iterable[Binding],
    monitor: HealthMonitor,
    scheduler: Scheduler,
    lifecycle: Lifecycle,
    database_path: Path | None,
) -> None:
    """Register the operational gauges and zero the restart counters of every instance; the
    database gauges describe the SQLite file (`database_path`; None: PostgreSQL, none)."""
    names = sorted(b.instance_name for b in instances)
    for name in names:
        for outcome in RESTART_OUTCOMES:
            metrics.restarts.labels(name, outcome)
    metrics.add_gauge(
        "lollms_instance_health", "Latest health check of each instance: 1 for its state",
        ["instance", "state"], lambda: _health(monitor),
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_instance_failed_checks", "Consecutive failed health checks of each instance",
        ["instance"], lambda: [({"instance": n}, monitor.failed_in_a_row.get(n, 0)) for n in names],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_instance_draining",
        "1 while the latest check found the instance's server draining (a planned stop)",
        ["instance"], lambda: [({"instance": n}, float(_draining(monitor, n))) for n in names],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_queue_capacity", "Places in each model's queue", ["instance", "model"],
        lambda: [({"instance": i, "model": m}, lane.queue_size)
                 for (i, m), lane in scheduler.lanes.items()],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_device_budget_bytes",
        "Memory the loaded models may take per device (its budget, else its size)",
        ["device"], lambda: _budgets(lifecycle),
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_device_models_bytes", "Memory the loaded models take per device", ["device"],
        lambda: _models_bytes(lifecycle),
    )  # fmt: skip
    if database_path is not None:
        _export_database(metrics, database_path)


def _export_database(metrics: Metrics, database_path: Path) -> None:
    metrics.add_gauge(
        "lollms_database_bytes", "Size of the SQLite database with its WAL", [],
        lambda: [({}, _database_bytes(database_path))],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_database_disk_free_bytes", "Free bytes on the database's file system", [],
        lambda: [({}, shutil.disk_usage(database_path.parent).free)],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_database_disk_size_bytes", "Size of the database's file system", [],
        lambda: [({}, shutil.disk_usage(database_path.parent).total)],
    )  # fmt: skip


def _health(monitor: HealthMonitor) -> Samples:
    return [
        ({"instance": name, "state": state}, 1.0 if health.state == state else 0.0)
        for name, health in sorted(monitor.latest.items())
        for state in HEALTH_STATES
    ]


def _draining(monitor: HealthMonitor, name: str) -> bool:
    health = monitor.latest.get(name)
    return health is not None and health.draining


def _budgets(lifecycle: Lifecycle) -> Samples:
    report = lifecycle.memory.report  # the last GPU reading: a scrape never calls NVML
    devices = lifecycle.devices(report) if report else [lifecycle.memory.ram(0)]
    return [({"device": d.name}, d.budget if d.budget is not None else d.total) for d in devices]


def _models_bytes(lifecycle: Lifecycle) -> Samples:
    """Every device of the budget gauge, 0 while nothing is loaded there: the memory alert
    and panel divide by this series, and a missing one reads as no data, not as room."""
    used = lifecycle.used_by_device()
    devices = [sample["device"] for sample, _ in _budgets(lifecycle)]
    devices += sorted(set(used) - set(devices))
    return [({"device": d}, used.get(d, 0)) for d in devices]


def _database_bytes(path: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total
