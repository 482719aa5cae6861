"""Limits that hold against real `lollms-server` processes: token budgets under parallel bursts,
ip_rpm for every request, auth-failure floods that cannot fill the disk, bounded metric labels,
audited key ids, request ids, and lollms streams that fail before their first byte."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from lollms_server.resources.scheduler import MAX_LANES, Scheduler
from lollms_server.security.audit import AuditLog
from lollms_server.security.audit_failures import MAX_SOURCES
from lollms_server.storage import schema
from lollms_server.storage.sqlite import SqliteStore
from lollms_server.testing.process import (
    SERVER_COMMAND,
    ServerProcess,
    lollms_process,
    server_env,
)

FOREIGN = {"Host": "evil.example"}  # not this machine: the request needs a key
PROMPT = "one two three four five six seven eight nine ten"  # 10 echo tokens, 49 characters


@dataclass
class Server:
    """A running server process and its files."""

    running: ServerProcess
    folder: Path

    @property
    def url(self) -> str:
        """Where it answers."""
        return self.running.url

    @property
    def data_dir(self) -> Path:
        """Its data dir (the database)."""
        return self.folder / "data"

    def key(self, *options: str) -> str:
        """A new user key made with the CLI (`--tpm 100` ...)."""
        done = subprocess.run(
            [*SERVER_COMMAND, "--config", str(self.folder / "lollms.toml"), "keys", "create",
             "--name", uuid.uuid4().hex[:8], "--role", "user", *options],
            env=server_env(self.data_dir), capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def stop(self) -> None:
        """SIGTERM: a graceful shutdown, which writes pending audit counts."""
        if self.running.process.poll() is None:
            self.running.process.terminate()
            self.running.process.wait(timeout=20)

    def database_bytes(self) -> int:
        """Size of the database with its WAL."""
        return sum(p.stat().st_size for p in self.data_dir.glob("*.sqlite*"))

    def audit_rows(self, event: str) -> list[dict[str, Any]]:
        """Rows of one audit event, read from the database file."""
        (path,) = [p for p in self.data_dir.glob("*.sqlite") if p.is_file()]
        db = sqlite3.connect(path)
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM audit WHERE event = ? ORDER BY id", (event,))
            return [{**dict(r), "detail": json.loads(r["detail"] or "null")} for r in rows]
        finally:
            db.close()


@contextmanager
def running_server(
    tmp_path: Path, extra_toml: str = "", delay_ms: int = 20, max_concurrent: int = 64
) -> Iterator[Server]:
    """A `lollms-server` process with one echo instance on a free loopback port."""
    config = (
        f'[bindings.echo]\ntype = "echo"\ndefault_model = "echo"\ndelay_ms = {delay_ms}\n'
        f'max_concurrent = {max_concurrent}\n\n[defaults]\nttt = "echo"\n\n{extra_toml}'
    )
    with lollms_process(tmp_path, config) as running:
        yield Server(running, tmp_path)


def generate_body(max_tokens: int, stream: bool = False, model: str = "slow") -> dict[str, Any]:
    return {
        "input_data": [{"type": "text", "data": PROMPT}],
        "model_name": model,
        "parameters": {"max_tokens": max_tokens},
        "stream": stream,
    }


async def served_tokens(response: aiohttp.ClientResponse) -> int:
    """Total tokens of a 200 answer (its usage, or the usage in a stream's final event)."""
    if response.content_type == "text/event-stream":
        text = await response.text()
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        final = events[-1]
        assert final["type"] == "final", events
        return int(final["metadata"]["usage"]["total_tokens"])
    return int((await response.json())["usage"]["total_tokens"])


async def test_parallel_bursts_never_overshoot_the_token_budget(tmp_path: Path) -> None:
    """19 parallel generations (streamed and not) on a 100-token budget: before reservations
    every one ran (380 tokens); now a window serves at most the limit plus one request."""
    with running_server(tmp_path) as server:
        key = server.key("--tpm", "100")
        headers = {**FOREIGN, "X-API-Key": key}
        url = f"{server.url}/api/v1/generate"
        async with aiohttp.ClientSession() as session:

            async def one(index: int) -> tuple[int, int, str | None]:
                body = generate_body(10, stream=index % 2 == 0)
                async with session.post(url, json=body, headers=headers) as response:
                    if response.status == 200:
                        return 200, await served_tokens(response), None
                    await response.read()
                    return response.status, 0, response.headers.get("Retry-After")

            results = await asyncio.gather(*(one(i) for i in range(19)))
            served = sum(tokens for _, tokens, _ in results)
            one_request = max(tokens for _, tokens, _ in results)  # 10 prompt + 10 answer
            assert one_request == 20
            assert served <= 100 + one_request, results
            refused = [r for r in results if r[0] != 200]
            assert refused and all(s == 429 and int(str(retry)) >= 1 for s, _, retry in refused)
            assert sum(1 for r in results if r[0] == 200) >= 4  # the budget is really used

            # a reservation is settled with the real count: 500 reserved, 20 used and charged
            roomy = {**FOREIGN, "X-API-Key": server.key("--tpm", "100")}
            big = await session.post(url, json=generate_body(500, model="echo"), headers=roomy)
            assert big.status == 200 and await served_tokens(big) == 20
            after = await session.post(url, json=generate_body(10, model="echo"), headers=roomy)
            assert after.status == 200, await after.text()


async def test_ip_rpm_counts_requests_without_a_key_or_with_a_bad_one(tmp_path: Path) -> None:
    with running_server(tmp_path, "[security]\nip_rpm = 6\n") as server:
        url = f"{server.url}/api/v1/list_models"
        bad = {**FOREIGN, "X-API-Key": "lollms_0123456789ab_" + "x" * 43}
        async with aiohttp.ClientSession() as session:
            statuses = []
            for headers in [FOREIGN, bad] * 5:
                async with session.get(url, headers=headers) as response:
                    statuses.append(response.status)
                    retry = response.headers.get("Retry-After")
            assert statuses[:6] == [401] * 6
            assert statuses[6:] == [429] * 4  # before: 401 for ever, never limited
            assert retry is not None and int(retry) >= 1
            async with session.get(url) as local:  # this machine is not an address to limit
                assert local.status == 200
    assert len(server.audit_rows("auth_failed")) <= 2  # the refused ones wrote nothing


async def test_an_auth_failure_flood_cannot_fill_the_disk(tmp_path: Path) -> None:
    """2,000 unauthenticated requests with a 4,000-character path (before: one 4 kB row each,
    8 MB) leave one row per address and reason with a count; successes stay complete."""
    with running_server(tmp_path) as server:
        before = server.database_bytes()
        long_path = "/api/v1/list_available_models/" + "a" * 4000
        url = f"{server.url}/api/v1/list_models"
        key = server.key()
        async with aiohttp.ClientSession() as session:

            async def fail(index: int) -> int:
                target = f"{server.url}{long_path}" if index % 2 else url
                headers = {**FOREIGN, "User-Agent": "flood/" + "u" * 3000}
                async with session.get(target, headers=headers) as response:
                    return response.status

            for start in range(0, 2000, 100):
                statuses = await asyncio.gather(*(fail(i) for i in range(start, start + 100)))
                assert set(statuses) == {401}
            for _ in range(3):
                ok = await session.post(
                    f"{server.url}/api/v1/generate",
                    json=generate_body(4, model="echo"),
                    headers={**FOREIGN, "X-API-Key": key},
                )
                assert ok.status == 200
        server.stop()
        grown = server.database_bytes() - before
        failures = server.audit_rows("auth_failed")
        generations = server.audit_rows("generation")
    assert grown < 512 * 1024, f"the database grew by {grown} bytes"
    assert 1 <= len(failures) <= 4, [f["detail"] for f in failures]
    assert sum(f["detail"]["count"] for f in failures) == 2000
    for row in failures:
        assert len(row["path"]) <= 256 and len(row["client"]) <= 256
        assert len(row["detail"]["user_agent"]) <= 1024
    assert len(generations) == 3  # every success keeps its own row


async def test_auth_failed_names_a_key_id_only_when_it_exists(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        real = server.key()
        real_id = real.split("_")[1]
        invented = "lollms_0123456789ab_" + "y" * 43
        wrong_secret = f"lollms_{real_id}_" + "z" * 43
        async with aiohttp.ClientSession() as session:
            for presented in (invented, wrong_secret):
                async with session.get(
                    f"{server.url}/api/v1/list_models", headers={**FOREIGN, "X-API-Key": presented}
                ) as response:
                    assert response.status == 401
            async with session.get(f"{server.url}/api/v1/audit?event=auth_failed") as response:
                events = (await response.json())["events"]
    assert sorted(str(e["key_id"]) for e in events) == sorted(["None", real_id])
    assert "0123456789ab" not in json.dumps(events)


async def test_a_client_request_id_is_kept_only_when_short_and_printable(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        async with aiohttp.ClientSession() as session:

            async def echoed(request_id: str) -> str:
                headers = {"X-Request-Id": request_id}
                async with session.get(f"{server.url}/api/v1/health", headers=headers) as reply:
                    return reply.headers["X-Request-Id"]

            assert await echoed("trace-42.a:b_c") == "trace-42.a:b_c"
            for hostile in ("x" * 129, "two words", "tab\tid", "caf\u00e9", "<script>", "a;b"):
                kept = await echoed(hostile)
                assert kept != hostile and len(kept) == 32 and kept.isalnum()


async def test_metric_labels_never_take_a_client_chosen_model_name(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        names = [f"m{uuid.uuid4().hex[:10]}" for _ in range(200)]
        chat = f"{server.url}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:

            async def ask(name: str, index: int) -> int:
                hi = [{"role": "user", "content": "hi"}]
                url = f"{server.url}/api/v1/generate" if index % 2 else chat
                body = (
                    {"input_data": [{"type": "text", "data": "hi"}], "model_name": name}
                    if index % 2
                    else {"model": f"echo/{name}", "messages": hi}
                )
                async with session.post(url, json=body) as response:
                    return response.status

            statuses = await asyncio.gather(*(ask(n, i) for i, n in enumerate(names)))
            assert set(statuses) == {404}
            ok = await session.post(
                f"{server.url}/api/v1/generate", json=generate_body(4, model="echo")
            )
            assert ok.status == 200
            async with session.request("PROPFIND", f"{server.url}/api/v1/health") as odd:
                assert odd.status == 405
            async with session.get(f"{server.url}/api/v1/list_models/{names[0]}") as raw:
                await raw.read()
            async with session.get(f"{server.url}/metrics") as scrape:
                text = await scrape.text()
    assert not [n for n in names if n in text]  # before: each name made its own series
    assert 'model="other"' in text
    assert 'lollms_generated_tokens_total{instance="echo",model="echo"}' in text
    assert "PROPFIND" not in text  # a method outside the standard set is `other` too


async def test_lollms_stream_errors_before_the_first_byte_are_http_statuses(
    tmp_path: Path,
) -> None:
    """Queue full and instance down (503 + Retry-After), token budget (429): plain HTTP
    errors like on /v1 and Ollama's face, not a 200 with an error event."""
    extra = '[resources]\nqueue_size = 0\n\n[bindings.down]\ntype = "echo"\ndown = true\n'
    with running_server(tmp_path, extra, delay_ms=200, max_concurrent=1) as server:
        url = f"{server.url}/api/v1/generate"
        async with aiohttp.ClientSession() as session:
            local_body = {**generate_body(5, stream=True), "binding_name": "echo"}
            first = await session.post(url, json=local_body)  # echo/slow's only slot, 1 s
            assert first.status == 200  # its headers came with its first token
            full = await session.post(url, json=local_body)  # no place in the queue
            assert full.status == 503, await full.text()
            assert int(full.headers["Retry-After"]) >= 1
            assert full.content_type == "application/json"
            assert "queue" in (await full.json())["error"]["message"]
            await first.read()

            down = await session.post(url, json={**local_body, "binding_name": "down"})
            assert down.status == 503 and down.content_type == "application/json"
            assert (await down.json())["error"]["type"] == "backend_unavailable"
            assert int(down.headers["Retry-After"]) >= 1  # every 503 says when to retry

            key = {**FOREIGN, "X-API-Key": server.key("--tpm", "5")}
            spent = await session.post(url, json=generate_body(5, model="echo"), headers=key)
            assert spent.status == 200
            limited = await session.post(url, json=local_body, headers=key)
            assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
            assert (await limited.json())["error"]["type"] == "rate_limited"


async def test_client_chosen_model_names_leave_a_bounded_number_of_lanes() -> None:
    """Every requested model gets a queue lane; idle ones are forgotten past MAX_LANES, so
    random names cannot grow the scheduler for ever. A busy lane is never dropped."""
    scheduler = Scheduler()
    busy = scheduler.lane("echo", "echo", 1)
    ticket = busy.enter(0)
    for index in range(3 * MAX_LANES):
        scheduler.lane("echo", f"random-{index}", 1)
    assert len(scheduler.lanes) <= MAX_LANES
    assert scheduler.lanes[("echo", "echo")] is busy and ticket.granted.is_set()


async def test_failures_from_many_addresses_share_one_overflow_row(tmp_path: Path) -> None:
    """Past MAX_SOURCES (address, reason) pairs in one interval, failures share one row per
    status: rotating addresses (an IPv6 /64 has plenty) cannot buy a row per request."""
    store = SqliteStore.open(tmp_path / "audit.sqlite")
    await schema.upgrade(store)
    failures = AuditLog(store).failures
    sent = MAX_SOURCES + 2000
    for index in range(sent):
        await failures.record(
            client=f"2001:db8::{index:x}", status=401, reason=f"bad key #{index}",
            key_id=None, method="GET", path="/api/v1/list_models", user_agent=None,
        )  # fmt: skip
    await failures.flush()
    rows = await store.query("SELECT client, detail FROM audit WHERE event = 'auth_failed'")
    assert len(rows) == MAX_SOURCES + 1
    assert sum(json.loads(r["detail"])["count"] for r in rows) == sent
    (overflow,) = [r for r in rows if r["client"] == "*"]
    assert json.loads(overflow["detail"])["count"] == 2000
    await store.close()
