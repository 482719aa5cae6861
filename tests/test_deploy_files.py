"""The shipped deployment files agree with the server and with each other: stop timeouts outlast
the drain, the compose file sets every address the HAProxy config reads, the image copies only
what exists and bakes in no secret. (HAProxy itself runs in tests/test_deploy_haproxy.py.)"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from lollms_server.config import Config
from lollms_server.config_default import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DRAIN_S = Config().drain_timeout_s


def seconds(value: str) -> float:
    """`45s`, `1m`, `45` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|min)?", value.strip())
    assert match, value
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "min": 60}[unit]


def test_systemd_unit_waits_for_the_drain() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "lollms-server.service")
    service = unit["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > DRAIN_S
    assert service["ExecStart"].endswith("lollms-server serve")


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit and its offline security score is "OK"
    (at most 3.0 of 10; it was 7.6 "EXPOSED" with the first hardening set)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        assert not os.environ.get("CI"), "systemd-analyze is missing (.ci/run installs systemd)"
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "lollms-server.service"  # ExecStart must name a file that exists here
    text = (DEPLOY / "systemd" / "lollms-server.service").read_text()
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -V", text))
    verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        [tool, "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= 3.0, security.stdout


def test_compose_matches_the_haproxy_config_and_the_drain() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [name for name, spec in services.items() if name.startswith("lollms-")]
    assert len(replicas) == 2
    for name in replicas:
        assert seconds(services[name]["stop_grace_period"]) > DRAIN_S
        assert services[name]["stop_signal"] == "SIGTERM"
    haproxy = services["haproxy"]
    (mount,) = haproxy["volumes"]
    assert (DEPLOY / mount.split(":")[0]).resolve() == DEPLOY / "haproxy" / "haproxy.cfg"
    wanted = set(re.findall(r"\$\{(\w+)-", (DEPLOY / "haproxy" / "haproxy.cfg").read_text()))
    assert wanted == set(haproxy["environment"]), "every address the HAProxy config reads"
    targets = {haproxy["environment"][f"LOLLMS_REPLICA{n}"] for n in (1, 2)}
    assert targets == {f"{name}:9601" for name in replicas}


def test_the_replica_config_trusts_the_compose_network_and_loopback_only() -> None:
    """HAProxy's address is a proxy's; a client's must never be (it would choose its own)."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    (subnet,) = [entry["subnet"] for entry in compose["networks"]["default"]["ipam"]["config"]]
    security = tomllib.loads((DEPLOY / "lollms.toml").read_text())["security"]
    assert sorted(security["trusted_proxies"]) == sorted(["127.0.0.1/32", subnet])
    assert ipaddress.ip_network(subnet).num_addresses <= 256  # the containers, not a LAN


def test_containerfile_copies_what_exists_and_bakes_in_no_secret() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert f"EXPOSE {DEFAULT_PORT}" in text
    assert f"LOLLMS_PORT={DEFAULT_PORT}" in text
    env_block = re.findall(r"^ENV (.+?)(?<!\\)$", text, flags=re.MULTILINE | re.DOTALL)
    assert env_block and not re.search(r"KEY|SECRET|PASSWORD|TOKEN", " ".join(env_block))
    assert "STOPSIGNAL SIGTERM" in text
