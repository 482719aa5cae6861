"""The load test of bench/loadtest.py, short: locust through the shipped HAProxy config to two
real replicas on a real PostgreSQL and Redis, one replica killed with -9 and restarted, the
other restarted with SIGTERM under load, a key revoked mid-run. The long run (200 users) is
`nox -s loadtest`; this one holds the goals that do not depend on the machine's speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lollms_server.testing.postgres import postgres_bin
from lollms_server.testing.services import redis_binary

LOADTEST = Path(__file__).resolve().parents[1] / "bench" / "loadtest.py"
USERS, DURATION_S = 20, 40


def require(found: object, what: str) -> None:
    """Fail where CI is set (the services are installed there), skip elsewhere."""
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is not installed")
        pytest.skip(f"{what} is not installed")


def test_short_load_test_fails_no_request_and_loses_no_audit_row(tmp_path: Path) -> None:
    require(postgres_bin(), "postgresql")
    require(redis_binary(), "redis-server")
    require(shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin"), "haproxy")
    out = tmp_path / "result.json"
    command = [
        sys.executable, str(LOADTEST), "--users", str(USERS), "--duration", str(DURATION_S),
        "--folder", str(tmp_path / "run"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    print(done.stdout)
    assert result["answered"] > 100, result
    assert result["failed_otherwise"] == 0, result["failures_otherwise"]
    assert result["error_rate"] <= result["failed_in_flight_on_kill"] / result["requests"]
    assert result["term_exit"] == 0 and result["term_under_load"], result
    assert result["answered_generations"] > 50
    assert result["audit_missing"] == 0, result
    assert 0 < result["limited_admitted"] <= result["limited_rpm"], result  # shared in Redis
    assert result["limited_refused"] >= result["limited_rpm"], result
    assert max(result["revoke_delays_s"]) <= 1.0, result["revoke_delays_s"]
