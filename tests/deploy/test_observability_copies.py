"""Helm reads only files inside the chart: its dashboards and rules are copies, kept equal.

k8s/dashboards/generate.py writes k8s/dashboards/*.json and k8s/alerts/collab-rules.yaml
is edited by hand; after a change, copy them:
    cp k8s/dashboards/*.json charts/collab/dashboards/
    cp k8s/alerts/collab-rules.yaml charts/collab/alerts/
"""

from __future__ import annotations

from deploykit import CHART, ROOT


def test_dashboards_are_identical() -> None:
    source = {p.name: p.read_bytes() for p in (ROOT / "k8s" / "dashboards").glob("*.json")}
    copies = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert source
    assert sorted(copies) == sorted(source)
    for name, body in source.items():
        assert copies[name] == body, f"charts/collab/dashboards/{name} differs"


def test_alert_rules_are_identical() -> None:
    source = ROOT / "k8s" / "alerts" / "collab-rules.yaml"
    assert (CHART / "alerts" / "collab-rules.yaml").read_bytes() == source.read_bytes()
