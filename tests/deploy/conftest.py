"""Fixtures of the deployment tests; the helpers live in deploykit.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import deploykit


@pytest.fixture(scope="session")
def helm() -> str:
    return deploykit.find_tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return deploykit.find_tool("kubectl")


@pytest.fixture(scope="session")
def renderer(helm: str) -> deploykit.Renderer:
    return deploykit.Renderer(helm)


@pytest.fixture(params=deploykit.SCENARIOS, ids=deploykit.scenario_id)
def scenario(request: pytest.FixtureRequest, renderer: deploykit.Renderer) -> list[dict[str, Any]]:
    """The manifests of one scenario, CRDs included and every optional API known."""
    return renderer.docs(
        "--include-crds", *deploykit.ALL_APIS, *deploykit.values_args(request.param)
    )


@pytest.fixture(scope="session")
def validate_manifests(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], None]:
    """``validate_manifests(text, name)``: kubernetes-validate --strict against the oldest
    and the newest Kubernetes the chart claims."""
    tool = deploykit.find_tool("kubernetes-validate")
    oldest, newest = deploykit.kube_versions()
    folder = tmp_path_factory.mktemp("manifests")

    def check(text: str, name: str) -> None:
        path = folder / f"{name}.yaml"
        path.write_text(text)
        for version in (oldest, newest):
            result = deploykit.run(
                [tool, "--strict", "--quiet", "-k", version, str(path)], check=False
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{name} against Kubernetes {version}:\n{output}"

    return check
