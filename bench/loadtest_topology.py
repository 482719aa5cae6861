"""The production topology of docs/deployment.md as real processes on loopback, for
bench/loadtest.py: an OpenAI upstream of known latency (bench/mock_upstream.py); two
lollms-server replicas running the shipped `deploy/lollms.toml` (its backends section replaced
by the test's; addresses, database and Redis from the environment as in production) that share
one PostgreSQL (keys, audit; or one SQLite file with `storage="sqlite"`) and one Redis (rate
limits); and Debian's HAProxy running the shipped `deploy/haproxy/haproxy.cfg` with its
addresses templated through the environment."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from common import HERE, free_port

from lollms_server.testing.fixtures import http_status
from lollms_server.testing.postgres import PostgresServer
from lollms_server.testing.process import server_env
from lollms_server.testing.replica import Replica
from lollms_server.testing.services import RedisServer

ROOT = HERE.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
SERVER = (sys.executable, "-m", "lollms_server.cli")
SHIPPED_CONFIG = ROOT / "deploy" / "lollms.toml"
BACKENDS_MARKER = "# --- backends"
BACKENDS = """[bindings.mock]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
max_concurrent = 256

[bindings.echo]
type = "echo"
"""


def replica_config(upstream_port: int) -> str:
    """The shipped deploy/lollms.toml as it is, with the test's backends in place of its own."""
    shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
    head, found, _ = shipped.partition(BACKENDS_MARKER)
    assert found, f"{SHIPPED_CONFIG} has no '{BACKENDS_MARKER}' line"
    return head + BACKENDS.format(upstream=upstream_port)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    """Poll `check` until it holds; RuntimeError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status_of(port: int, path: str, key: str | None = None, timeout_s: float = 5.0) -> int:
    """The status of a GET on 127.0.0.1:`port` (0 when nothing answers)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http_status(port, path, headers, timeout_s)


def cli(topo_folder: Path, shared: dict[str, str], *args: str) -> str:
    """Run `lollms-server <args>` with the replicas' config and storage; its standard output."""
    done = subprocess.run(
        [*SERVER, "--config", str(topo_folder / "lollms.toml"), *args],
        env={**server_env(topo_folder / "data"), **shared},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


class SampledReplica(Replica):
    """A replica whose resident memory is sampled over the run."""

    def __init__(self, name: str, folder: Path, data_dir: Path) -> None:
        super().__init__(name, folder, data_dir)
        self.rss: list[tuple[float, float]] = []  # (time, MiB)

    def sample(self) -> None:
        """Record the process's resident memory now (nothing while it is down)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                mib = psutil.Process(self.process.pid).memory_info().rss / 2**20
                self.rss.append((time.time(), mib))

    def start(self, config: Path, extra_env: Mapping[str, str] | None = None) -> None:
        """Start it listening where LOLLMS_HOST/LOLLMS_PORT say, as in production."""
        address = {"LOLLMS_HOST": "127.0.0.1", "LOLLMS_PORT": str(self.port)}
        super().start(config, {**(extra_env or {}), **address})

    def terminate(self) -> int:
        """SIGTERM: drain, then the exit status."""
        return self.stop()


def haproxy_binary() -> str:
    """Debian's haproxy."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
    return found


def stats_states(stats_port: int) -> dict[str, str]:
    """Each replica's state as HAProxy's CSV stats show it (empty while it does not answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", stats_port, timeout=5)
    try:
        conn.request("GET", "/;csv")
        text = conn.getresponse().read().decode().lstrip("# ")
    except OSError:
        return {}
    finally:
        conn.close()
    rows = csv.DictReader(io.StringIO(text))
    return {
        r["svname"]: r["status"]
        for r in rows
        if r["pxname"] == "lollms_replicas" and r["svname"].startswith("replica")
    }


@dataclass
class Topology:
    """The started processes and where they answer."""

    folder: Path
    upstream_port: int
    front_port: int
    stats_port: int
    replicas: list[SampledReplica]
    shared: dict[str, str]  # LOLLMS_DATABASE_URL, LOLLMS_RATE_LIMIT_STORAGE
    postgres: PostgresServer | None

    @property
    def config(self) -> Path:
        """The replicas' config file (the shipped one with the test's backends)."""
        return self.folder / "lollms.toml"

    @property
    def data_dir(self) -> Path:
        """The replicas' data dir (the SQLite file with `storage="sqlite"`)."""
        return self.folder / "data"

    def cli(self, *args: str) -> str:
        """`lollms-server <args>` on the replicas' config and storage."""
        return cli(self.folder, self.shared, *args)

    def audit_ids(self) -> set[str]:
        """The request ids of the audit rows with status 200 (from either store)."""
        sql = "SELECT request_id FROM audit WHERE status = 200 AND request_id IS NOT NULL"
        if self.postgres is not None:
            return set(self.postgres.psql(sql, "lollms").split())
        db = sqlite3.connect(f"file:{self.data_dir / 'lollms.sqlite'}?mode=ro", uri=True)
        try:
            return {row[0] for row in db.execute(sql).fetchall()}
        finally:
            db.close()

    def both_up(self) -> bool:
        """Whether HAProxy has both replicas UP."""
        return stats_states(self.stats_port) == {"replica1": "UP", "replica2": "UP"}

    def restart(self, replica: SampledReplica) -> None:
        """Start `replica` again and wait until it is ready and HAProxy has it UP."""
        replica.start(self.config, self.shared)
        wait_until(replica.ready, f"{replica.name} ready")
        wait_until(self.both_up, "both replicas UP in HAProxy")


@contextlib.contextmanager
def topology(folder: Path, upstream_latency_s: float, storage: str) -> Iterator[Topology]:
    """Start upstream, PostgreSQL (`storage="postgres"`), Redis, two replicas and HAProxy; stop
    them all at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "data"
    upstream_port, front, stats = free_port(), free_port(), free_port()
    redis = RedisServer(folder / "redis")
    postgres = PostgresServer() if storage == "postgres" else None
    started: list[subprocess.Popen[bytes]] = []
    replicas = [SampledReplica(f"replica{n}", folder / f"replica{n}", data_dir) for n in (1, 2)]
    try:
        with (folder / "upstream.log").open("wb") as log:
            mock = [sys.executable, str(HERE / "mock_upstream.py"), str(upstream_port)]
            latency = ["--latency", str(upstream_latency_s)]
            started.append(subprocess.Popen([*mock, *latency], stdout=log, stderr=log))
        redis.start()
        database = f"sqlite:///{data_dir / 'lollms.sqlite'}"
        if postgres is not None:
            postgres.start()
            database = postgres.create_database("lollms")
        shared = {"LOLLMS_DATABASE_URL": database, "LOLLMS_RATE_LIMIT_STORAGE": redis.limits_uri}
        (folder / "lollms.toml").write_text(replica_config(upstream_port), encoding="utf-8")
        data_dir.mkdir(parents=True, exist_ok=True)
        cli(folder, shared, "db", "upgrade")  # the schema, before two replicas race to make it
        for replica in replicas:
            replica.start(folder / "lollms.toml", shared)
        env = {
            **os.environ,
            "LOLLMS_LB_BIND": f"127.0.0.1:{front}",
            "LOLLMS_LB_STATS": f"127.0.0.1:{stats}",
            "LOLLMS_REPLICA1": f"127.0.0.1:{replicas[0].port}",
            "LOLLMS_REPLICA2": f"127.0.0.1:{replicas[1].port}",
        }
        with (folder / "haproxy.log").open("wb") as log:
            command = [haproxy_binary(), "-f", str(HAPROXY_CFG), "-db"]
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        made = Topology(folder, upstream_port, front, stats, replicas, shared, postgres)
        for replica in replicas:
            wait_until(replica.ready, f"{replica.name} ready")
        wait_until(made.both_up, "both replicas UP in HAProxy")
        yield made
    finally:
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait(15)
        for process in started:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait(10)
        redis.stop()
        if postgres is not None:
            postgres.stop()
            shutil.rmtree(postgres.folder, ignore_errors=True)
