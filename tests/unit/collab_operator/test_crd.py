"""The CRD (operator/crds/gatewaypool.yaml): its examples validate as they say, and its
defaults and rules agree with collab_operator.spec.

The schema is checked with jsonschema (Draft 4, which structural schemas follow) and the
CEL rules with cel-python: no API server is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from collab_operator import GROUP, PLURAL, VERSION
from collab_operator import spec as pool_spec

CRDS = Path(__file__).parents[3] / "operator" / "crds"
CRD = yaml.safe_load((CRDS / "gatewaypool.yaml").read_text())
EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))


def version() -> dict[str, Any]:
    [served] = [v for v in CRD["spec"]["versions"] if v["name"] == VERSION]
    return served


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply the schema's defaults as the API server does (structural defaulting)."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    result = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = sub["default"]
        if name in result:
            result[name] = with_defaults(sub, result[name])
    return result


def problems(obj: dict[str, Any]) -> list[str]:
    schema = version()["schema"]["openAPIV3Schema"]
    found = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(obj)]
    if found:
        return found
    spec = with_defaults(spec_schema(), obj["spec"])
    env = celpy.Environment()
    for rule in spec_schema().get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(spec)}):
            found.append(rule["message"])
    return found


def test_names_match_the_package() -> None:
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert CRD["spec"]["group"] == GROUP
    assert CRD["spec"]["names"]["shortNames"] == ["gwp"]
    assert CRD["spec"]["scope"] == "Namespaced"
    assert version()["subresources"] == {"status": {}}
    columns = [c["name"] for c in version()["additionalPrinterColumns"]]
    assert columns[:4] == ["Desired", "Current", "Load", "Ready"]


def test_conditions_are_a_map_keyed_by_type() -> None:
    status = version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_as_named(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    found = problems(obj)
    if path.stem.startswith("invalid-"):
        assert found, f"{path.name} should be refused"
        with pytest.raises(pool_spec.InvalidSpec):
            pool_spec.parse(with_defaults(spec_schema(), obj["spec"]))
    else:
        assert found == []
        pool_spec.parse(with_defaults(spec_schema(), obj["spec"]))


def test_the_cel_rule_names_the_fields() -> None:
    obj = yaml.safe_load((CRDS / "examples" / "invalid-min-above-max.yaml").read_text())
    assert problems(obj) == ["minReplicas must not exceed maxReplicas"]


def test_defaults_agree_with_the_parser() -> None:
    """A minimal spec parses to the same pool whether the server or the parser defaults."""
    minimal = {"deploymentName": "gw", "maxReplicas": 10, "targetConnectionsPerPod": 100}
    assert pool_spec.parse(with_defaults(spec_schema(), minimal)) == pool_spec.parse(minimal)
