"""Request ids, the overhead header, Prometheus metrics and the JSON request log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS
from prometheus_client.parser import text_string_to_metric_families

from lollms_server.logs import LINE_FIELDS, JsonFormatter, TextFormatter
from lollms_server.trace import new_id

Client = TestClient[Any, Any]
BODY = {"input_data": [{"type": "text", "data": "count these four words"}]}


async def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_request_ids(client: Client) -> None:
    response = await client.get("/api/v1/health")
    assert len(response.headers["X-Request-Id"]) == 32
    kept = await client.get("/api/v1/health", headers={"X-Request-Id": "trace-42.a"})
    assert kept.headers["X-Request-Id"] == "trace-42.a"
    replaced = await client.get("/api/v1/health", headers={"X-Request-Id": "bad id\u00e9" * 3})
    assert replaced.headers["X-Request-Id"] != "bad id\u00e9" * 3
    missing = await client.get("/api/v1/list_available_models/nope")
    error = (await missing.json())["error"]
    assert error["request_id"] == missing.headers["X-Request-Id"]
    generated = await client.post("/api/v1/generate", json=BODY)
    assert (await generated.json())["request_id"] == generated.headers["X-Request-Id"]


async def test_overhead_header_only_after_a_binding_call(client: Client) -> None:
    plain = await client.post("/api/v1/generate", json=BODY)
    overhead = float(plain.headers["X-Lollms-Overhead-Ms"])
    assert 0 <= overhead < 1000
    streamed = await client.post("/api/v1/generate", json={**BODY, "stream": True})
    await streamed.read()
    assert float(streamed.headers["X-Lollms-Overhead-Ms"]) >= 0
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert float(chat.headers["X-Lollms-Overhead-Ms"]) >= 0
    health = await client.get("/api/v1/health")
    assert "X-Lollms-Overhead-Ms" not in health.headers


async def test_metrics_parse_and_move(client: Client) -> None:
    before = await scrape(client)
    for _ in range(3):
        assert (await client.post("/api/v1/generate", json=BODY)).status == 200
    streamed = await client.post("/api/v1/generate", json={**BODY, "stream": True})
    await streamed.read()
    await client.get("/api/v1/list_available_models/nope")
    after = await scrape(client)
    route = {"route": "/api/v1/generate", "method": "POST", "status": "200"}
    assert (
        value(after, "lollms_requests_total", **route)
        - value(before, "lollms_requests_total", **route)
        == 4
    )
    missing = {
        "route": "/api/v1/list_available_models/{instance}",
        "method": "GET",
        "status": "404",
    }
    assert (
        value(after, "lollms_requests_total", **missing)
        == value(before, "lollms_requests_total", **missing) + 1
    )
    done = {"instance": "echo", "generation_type": "ttt", "status": "200"}
    assert (
        value(after, "lollms_generations_total", **done)
        - value(before, "lollms_generations_total", **done)
        == 4
    )
    tokens = {"instance": "echo", "model": "echo"}
    assert (
        value(after, "lollms_generated_tokens_total", **tokens)
        - value(before, "lollms_generated_tokens_total", **tokens)
        == 16
    )
    ttft = value(after, "lollms_time_to_first_token_seconds_count", instance="echo")
    assert ttft - value(before, "lollms_time_to_first_token_seconds_count", instance="echo") == 1
    assert value(after, "lollms_overhead_seconds_count") > value(
        before, "lollms_overhead_seconds_count"
    )


async def test_metrics_need_admin(client: Client) -> None:
    response = await client.get("/metrics", headers={"Host": "evil.example"})
    assert response.status == 401


async def test_one_json_log_line_per_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="lollms_server.requests"):
        response = await client.post("/api/v1/generate", json=BODY)
    records = [r for r in caplog.records if r.name == "lollms_server.requests"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert (line["status"], line["instance"], line["model"]) == (200, "echo", "echo")
    assert line["path"] == "/api/v1/generate" and line["duration_ms"] >= line["overhead_ms"] >= 0
    assert line["level"] == "info" and line["time"].endswith("Z")
    # the path (method, status) once per line: before, also in the message "POST /api/... 200"
    assert line["message"] == "request"
    assert json.dumps(line).count("/api/v1/generate") == 1
    text = TextFormatter().format(records[0])
    assert text.count("/api/v1/generate") == 1 and text.count("POST") == 1
    assert "requests: request " in text and " path=/api/v1/generate status=200 " in text, text


def test_a_line_s_fields_in_one_dict_are_written_as_extras_are() -> None:
    """`extra={LINE_FIELDS: {...}}` (the request log's) gives the same line as the fields given
    one by one: flat, None left out, credentials in URLs masked."""
    fields = {
        "path": "/v1/x",
        "status": 200,
        "key_id": None,
        "url": "http://u:pw@h/",
    }
    logger = logging.getLogger("test.line_fields")
    one_dict = logger.makeRecord(
        "t", logging.INFO, "", 0, "m", (), None, extra={LINE_FIELDS: fields}
    )
    one_by_one = logger.makeRecord("t", logging.INFO, "", 0, "m", (), None, extra=fields)
    line = json.loads(JsonFormatter().format(one_dict))
    assert line == {**json.loads(JsonFormatter().format(one_by_one)), "time": line["time"]}
    assert (line["path"], line["status"], line["url"]) == (
        "/v1/x",
        200,
        "http://***@h/",
    )
    assert "key_id" not in line and LINE_FIELDS not in line


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_is_logged_and_counted_as_499(
    make_client: Any, make_config: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    """aiohttp cancels the handler of a client that left: no 500 for the request log, the
    request counter or the alerts built on them (the audit row says 499 too)."""
    bindings = {"echo": {"type": "echo", "default_model": "slow", "delay_ms": 400}}
    client = await make_client(make_config({"bindings": bindings, "defaults": ECHO_DEFAULTS}))
    body = {
        "model": "echo/slow",
        "stream": stream,
        "messages": [{"role": "user", "content": "a b c d"}],
    }
    with caplog.at_level(logging.INFO, logger="lollms_server.requests"):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_read(client.post("/v1/chat/completions", json=body)), 0.2)
        for _ in range(100):  # the server notices the closed connection on its own time
            if any(r.name == "lollms_server.requests" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    records = [r for r in caplog.records if r.name == "lollms_server.requests"]
    assert [json.loads(JsonFormatter().format(r))["status"] for r in records] == [499]
    samples = await scrape(client)
    labels = {"route": "/v1/chat/completions", "method": "POST"}
    assert value(samples, "lollms_requests_total", **labels, status="499") == 1
    assert value(samples, "lollms_requests_total", **labels, status="500") == 0
    events = (await (await client.get("/api/v1/audit?limit=5")).json())["events"]
    assert [e["status"] for e in events if e["event"] == "generation"] == [499]


async def _read(request: Any) -> bytes:
    response = await request
    return bytes(await response.read())


async def test_the_wait_for_a_model_slot_is_not_server_overhead(
    make_client: Any, make_config: Any
) -> None:
    """A full lane makes requests wait seconds for the backend's slot: that wait is in
    `lollms_queue_wait_seconds`, not in the server's own overhead (the header, the histogram
    that LollmsHighLatency reads), whether the wait ends in a slot or a 503 queue timeout."""
    bindings = {"echo": {"type": "echo", "default_model": "slow", "delay_ms": 200,
                         "max_concurrent": 1}}  # fmt: skip
    raw = {"bindings": bindings, "defaults": ECHO_DEFAULTS, "resources": {"queue_timeout_s": 0.5}}
    client = await make_client(make_config(raw))
    body = {"model": "echo/slow", "messages": [{"role": "user", "content": "a b"}]}
    replies = await asyncio.gather(
        *[client.post("/v1/chat/completions", json=body) for _ in range(3)]
    )
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [200, 200, 503], statuses  # 400 ms per answer: the third times out
    overheads = [float(reply.headers["X-Lollms-Overhead-Ms"]) for reply in replies]
    assert max(overheads) < 150, overheads
    samples = await scrape(client)
    assert value(samples, "lollms_queue_wait_seconds_sum", instance="echo") >= 0.3
    assert value(samples, "lollms_overhead_seconds_count") == 3
    assert value(samples, "lollms_overhead_seconds_sum") < 0.3


async def test_the_wait_for_a_model_load_is_not_server_overhead(
    make_client: Any, make_config: Any
) -> None:
    """Three requests arrive for a model that takes 400 ms to load: one starts the load, the
    others wait for it; none of them counts the load as the server's own overhead."""
    bindings = {"echo": {"type": "echo", "default_model": "echo", "load_delay_ms": 400}}
    client = await make_client(make_config({"bindings": bindings, "defaults": ECHO_DEFAULTS}))
    body = {"model": "echo/echo", "messages": [{"role": "user", "content": "a b"}]}
    replies = await asyncio.gather(
        *[client.post("/v1/chat/completions", json=body) for _ in range(3)]
    )
    assert [reply.status for reply in replies] == [200, 200, 200]
    overheads = [float(reply.headers["X-Lollms-Overhead-Ms"]) for reply in replies]
    assert max(overheads) < 150, overheads


def test_request_ids_are_uuid4_shaped_and_differ_between_processes() -> None:
    """New request ids look like `uuid4().hex`, never repeat, and two processes (forked or
    started) do not make the same ones."""
    ids = {new_id() for _ in range(20000)}
    assert len(ids) == 20000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).hex == i for i in list(ids)[:500])
    code = "from lollms_server.trace import new_id; print(new_id())"
    started = {subprocess.check_output([sys.executable, "-c", code], text=True) for _ in range(2)}
    assert len(started) == 2
    read, write = os.pipe()
    if (pid := os.fork()) == 0:  # pragma: no cover - the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() != new_id()
