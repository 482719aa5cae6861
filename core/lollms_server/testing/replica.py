"""A restartable `lollms-server` process on a fixed port, as one replica of a deployment."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import free_port, http_status
from .process import SERVER_COMMAND, server_env


@dataclass
class Replica:
    """One server process that keeps its port across restarts (a load balancer knows it)."""

    name: str
    folder: Path
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, config: Path, extra_env: Mapping[str, str] | None = None) -> None:
        """Start `lollms-server --config <config>` and return at once (see `ready`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**server_env(self.data_dir), **(extra_env or {})}
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "--config", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        """Whether the process is started and alive."""
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Whether `/api/v1/ready` answers 200 (RuntimeError when the process died)."""
        if not self.running():
            raise RuntimeError(f"{self.name} is not running:\n{self.log()}")
        return http_status(self.port, "/api/v1/ready") == 200

    def kill(self) -> None:
        """SIGKILL: no drain, requests in flight are cut."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit status once it has drained."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def log(self) -> str:
        """The end of its log."""
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
