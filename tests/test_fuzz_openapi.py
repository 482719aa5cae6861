"""A bounded schemathesis pass over the OpenAPI document of a real server: no input gives a 5xx
(501, an operation the binding lacks, is the documented answer to a request, not a failure)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from lollms_server.testing import free_port, wait_for_http


@pytest.fixture(scope="session")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env.update(LOLLMS_DATA_DIR=str(tmp_path_factory.mktemp("fuzz")), LOLLMS_PORT=str(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "lollms_server.cli"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_http(f"{base}/api/v1/health", timeout_s=30), "server did not start"
        yield schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    finally:
        server.terminate()
        server.wait(timeout=10)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case: Any) -> None:
    response = case.call(timeout=30)
    if response.status_code == 501:  # documented: an operation the chosen binding lacks
        assert "error" in response.json(), response.text[:300]
        return
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
