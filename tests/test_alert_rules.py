"""The shipped Prometheus rules and configs (deploy/): `promtool check rules`, `promtool test
rules` (deploy/prometheus/alerts_test.yml, a firing and a silent case for every alert), `promtool
check config` and `amtool check-config`. The end-to-end run against real processes is
plugins/lollms-openai/tests/test_alerts_e2e.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"


def binary(name: str) -> str:
    """A Debian monitoring binary; where CI is set, missing is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_are_valid() -> None:
    out = run(binary("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_names())} rules found" in out


def test_rule_unit_tests_pass() -> None:
    out = run(binary("promtool"), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    names = alert_names()
    assert len(names) >= 15 and len(set(names)) == len(names)
    for name in names:
        assert cases.get(name) == {True, False}, f"{name}: {cases.get(name)}"


def test_scrape_and_alertmanager_configs_are_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    key_file = tmp_path / "lollms-server.key"
    key_file.write_text("lollms-admin-key")
    (job,) = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/etc/prometheus/lollms-server.key"
    job["authorization"]["credentials_file"] = str(key_file)
    config["rule_files"] = [str(RULES)]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    run(binary("promtool"), "check", "config", str(checked))
    run(binary("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
