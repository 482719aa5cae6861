"""Real shared-state services for replica tests, started from the Debian binaries on a free
loopback port in a temp dir and stopped afterwards: Redis (rate limits across replicas)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import free_port

REDIS_SERVER = "redis-server"


def redis_binary() -> str | None:
    """The redis-server executable (Debian: apt-get install redis-server), or None."""
    return shutil.which(REDIS_SERVER) or shutil.which(REDIS_SERVER, path="/usr/sbin:/usr/bin")


def redis_ping(port: int, timeout_s: float = 0.5) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:`port`, nothing persisted, its files in `folder`."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>`."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def limits_uri(self) -> str:
        """The `[security] rate_limit_storage` URI of this Redis."""
        return f"async+{self.url}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                "--logfile", str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not redis_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not come up on {self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A running RedisServer until the block ends."""
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
