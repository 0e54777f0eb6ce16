"""The GatewayPool CRD: the chart's copy, and the pools the manifests create.

kubernetes-validate knows only built-in kinds, so the GatewayPools are checked here the
way the API server would: defaults from the schema, then the openAPIV3Schema (with
unknown fields refused, as kubectl's strict field validation does), then the CEL rules.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import (
    ALL_APIS,
    CHART,
    ROOT,
    SCENARIOS,
    Renderer,
    by_kind,
    documents,
    need_module,
    one,
    run,
    values_args,
)

OPERATOR_CRD = ROOT / "operator" / "crds" / "gatewaypool.yaml"
CHART_CRD = CHART / "crds" / "gatewaypool.yaml"
EXAMPLES = ROOT / "operator" / "crds" / "examples"


def version_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CHART_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        result = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            result["additionalProperties"] = False
        return result
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    result = dict(value)
    for key, child in schema["properties"].items():
        if key not in result and "default" in child:
            result[key] = copy.deepcopy(child["default"])
        if key in result:
            result[key] = defaulted(result[key], child)
    return result


def cel_failures(value: Any, schema: dict[str, Any]) -> list[str]:
    """Messages of the x-kubernetes-validations rules that ``value`` breaks."""
    celpy = need_module("celpy", "cel-python")
    failures = []
    for rule in schema.get("x-kubernetes-validations", []):
        environment = celpy.Environment()
        program = environment.program(environment.compile(rule["rule"]))
        if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
            failures.append(rule.get("message", rule["rule"]))
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                failures += cel_failures(value[key], child)
    return failures


def problems(pool: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``pool``; empty when it would store it."""
    jsonschema = need_module("jsonschema", "jsonschema")
    schema = version_schema()
    pool = defaulted(pool, schema)
    validator = jsonschema.Draft4Validator(strict(schema))
    errors = [error.message for error in validator.iter_errors(pool)]
    return errors or cel_failures(pool, schema)


def test_chart_ships_the_operators_crd() -> None:
    assert OPERATOR_CRD.exists(), "operator/crds/gatewaypool.yaml is the source of the copy"
    assert CHART_CRD.read_bytes() == OPERATOR_CRD.read_bytes()


def test_crd_names() -> None:
    crd = yaml.safe_load(CHART_CRD.read_text())
    assert crd["metadata"]["name"] == "gatewaypools.collab.gremlins.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "GatewayPool",
        "gatewaypools",
        ["gwp"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda v: "defaults" if v is None else v.name)
def test_rendered_pools_are_accepted(renderer: Renderer, values: Path | None) -> None:
    docs = renderer.docs(*ALL_APIS, *values_args(values))
    for pool in by_kind(docs, "GatewayPool"):
        assert problems(pool) == []
        gateway = one(docs, "Deployment", pool["spec"]["deploymentName"])
        assert gateway["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"


def test_kustomized_pools_are_accepted(kubectl: str) -> None:
    for folder in ("k8s/base", "k8s/overlays/dev"):
        docs = documents(run([kubectl, "kustomize", str(ROOT / folder)]).stdout)
        (pool,) = by_kind(docs, "GatewayPool")
        assert problems(pool) == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_operator_examples(path: Path) -> None:
    pool = yaml.safe_load(path.read_text())
    if path.name.startswith("invalid-"):
        assert problems(pool) != []
    else:
        assert problems(pool) == []


POOL = {
    "apiVersion": "collab.gremlins.dev/v1alpha1",
    "kind": "GatewayPool",
    "metadata": {"name": "gateways"},
    "spec": {"deploymentName": "collab-gateway", "maxReplicas": 4, "targetConnectionsPerPod": 100},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"minReplicas": 5}, "minReplicas must not exceed maxReplicas"),
        ({"minReplicas": 0}, "0 is less than the minimum of 1"),
        ({"deploymentName": ""}, "'' should be non-empty"),
        ({"targetConnectionsPerPod": "many"}, "'many' is not of type 'integer'"),
        ({"scaleDown": {"tolerance": 2}}, "2 is greater than the maximum of 1"),
        ({"replicas": 3}, "Additional properties are not allowed ('replicas' was unexpected)"),
    ],
)
def test_bad_pools_are_refused(spec: dict[str, Any], expected: str) -> None:
    pool = copy.deepcopy(POOL)
    pool["spec"].update(spec)
    assert expected in problems(pool)


def test_cel_sees_the_defaults() -> None:
    # minReplicas defaults to 1: a pool of at most one gateway is valid, none is not.
    pool = copy.deepcopy(POOL)
    pool["spec"]["maxReplicas"] = 1
    assert problems(pool) == []
    pool["spec"]["minReplicas"] = 2
    assert problems(pool) == ["minReplicas must not exceed maxReplicas"]
