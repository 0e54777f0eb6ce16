"""The Prometheus alert rules (k8s/alerts): valid, and each alert's unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ALERTS = Path(__file__).resolve().parents[3] / "k8s" / "alerts"
RULES = ALERTS / "collab-rules.yaml"
TESTS = sorted((ALERTS / "tests").glob("*.yaml"))


def promtool(tool, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_rules_are_valid(tool) -> None:
    result = promtool(tool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(tool) -> None:
    result = promtool(tool, "test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == alerts
    assert quiet == alerts
