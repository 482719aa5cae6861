"""A real PostgreSQL for tests: `initdb` + `postgres` from the Debian binaries, run as the
`postgres` user (PostgreSQL refuses root) in a temp dir on a free loopback port, then stopped."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fixtures import free_port

SERVICE_USER = "postgres"
BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL bin folder (apt-get install postgresql), or None."""
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name))
    return Path(found[-1]) if found else None


def _service_user() -> dict[str, Any]:
    """Popen's arguments that run the command as the postgres user when we are root
    (PostgreSQL refuses root); the process is postgres itself, so signals reach it."""
    if os.geteuid() != 0:
        return {}
    return {"user": SERVICE_USER, "group": SERVICE_USER, "extra_groups": []}


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in `folder` on 127.0.0.1:`port`; trust auth, user `postgres`.

    The folder is a fresh temp dir the postgres user owns (pytest's tmp_path is root's, 0700).
    """

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lollms-pg-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        """`postgresql://postgres@127.0.0.1:<port>/<database>`."""
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def bin(self) -> Path:
        """The folder of initdb, postgres, psql, pg_dump..."""
        found = postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        return found

    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.folder / "data"

    def start(self, timeout_s: float = 60.0) -> None:
        """initdb (first time), start postgres, wait until it accepts connections."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, SERVICE_USER)
        if not self.data.exists():
            subprocess.run(
                [
                    str(self.bin / "initdb"), "-D", str(self.data), "-U", SERVICE_USER,
                    "--auth=trust", "--encoding=UTF8", "--no-sync",
                ],
                check=True, capture_output=True, timeout=120, cwd=self.folder,
                **_service_user(),
            )  # fmt: skip
        log = self.folder / "postgres.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", f"unix_socket_directories={self.folder}",
                    "-c", "max_connections=200", "-c", "shared_buffers=32MB",
                ],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.folder, **_service_user(),
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres did not come up on {self.port}:\n{tail}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether the server accepts connections (pg_isready)."""
        done = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False, timeout=10,
        )  # fmt: skip
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql; its output (unaligned, tuples only)."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop it (fast shutdown: SIGINT), SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgresServer in a temp dir until the block ends (then the dir is gone)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
