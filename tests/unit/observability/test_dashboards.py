"""The Grafana dashboards (k8s/dashboards): generated, linted, and every query parses."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

DASHBOARDS = Path(__file__).resolve().parents[3] / "k8s" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", DASHBOARDS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = load_generator()
NAMES = sorted(GENERATE.DASHBOARDS)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside rows


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every query, with Grafana's variables filled in."""
    for panel in panels(dashboard):
        for query in panel.get("targets", []):
            yield panel["title"], query["expr"].replace("$__rate_interval", "1m")


def nulls(value: Any, key: str) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and v is None:
                yield k
            yield from nulls(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from nulls(item, key)


def test_the_checked_in_files_are_the_generated_ones() -> None:
    on_disk = {path.name for path in DASHBOARDS.glob("*.json")}
    assert on_disk == set(NAMES), "regenerate: python k8s/dashboards/generate.py"
    for name in NAMES:
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == GENERATE.render(name), (
            f"{name} is stale: python k8s/dashboards/generate.py"
        )


def test_uids_are_unique() -> None:
    uids = [load(name)["uid"] for name in NAMES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_lint(name: str) -> None:
    dashboard = load(name)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert not list(nulls(dashboard, "datasource"))
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        refs = [query["refId"] for query in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for query in panel["targets"]:
            assert query["datasource"] == DATASOURCE, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_every_expression_parses(tool, tmp_path: Path) -> None:
    # promtool parses PromQL only inside rule files: each query becomes a recording rule.
    rules = [
        {"record": f"collab_dashboard:query_{n}", "expr": expr}
        for n, (_, expr) in enumerate(
            (item for name in NAMES for item in expressions(load(name))), start=1
        )
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
