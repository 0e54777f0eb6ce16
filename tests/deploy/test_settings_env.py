"""The environment the manifests give each service is exactly what its settings read.

The accepted names come from the settings classes themselves (pydantic-settings: the
env_prefix plus the field name, or the field's validation aliases), so renaming a setting
in code or in the chart breaks these tests. The rendered values must also pass the
settings' own validation.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from deploykit import (
    CHART,
    ROOT,
    SCENARIOS,
    Renderer,
    component,
    container,
    documents,
    need_module,
    run,
    values_args,
    workloads,
)
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

#: Settings the manifests set themselves, or that must not be set in a cluster; the chart's
#: `<service>.settings` may carry every other field.
MANAGED = {
    "gateway": {
        "host",
        "port",
        "redis_url",
        "ingress_shards",
        "jwt_secret",
        "jwt_audience",
        "jwt_leeway_seconds",
        "gateway_id",
    },
    "edit-transform": {"host", "port", "redis_url", "ingress_shards", "consumer", "fault"},
    # A StatefulSet: partitions from the values, partition and consumer from the pod.
    "presence": {
        "host",
        "port",
        "redis_url",
        "ingress_shards",
        "consumer",
        "partition",
        "partitions",
    },
}
VALUES_KEY = {"gateway": "gateway", "edit-transform": "transform", "presence": "presence"}
OURS = re.compile(r"^(COLLAB_[A-Z0-9_]+|REDIS_URL)$")


def settings_class(name: str) -> type[BaseSettings]:
    module, cls = {
        "gateway": ("collab_gateway.settings", "GatewaySettings"),
        "edit-transform": ("collab_transform.settings", "TransformSettings"),
        "presence": ("collab_presence.settings", "PresenceSettings"),
        "operator": ("collab_operator.settings", "OperatorSettings"),
    }[name]
    found: type[BaseSettings] = getattr(need_module(module, "the project (pip install -e .)"), cls)
    return found


def accepted(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name, as pydantic-settings reads them."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names[(prefix + field_name).upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice.upper()] = field_name
    return names


def kustomize_docs(kubectl: str, folder: str) -> list[dict[str, Any]]:
    return documents(run([kubectl, "kustomize", str(ROOT / folder)]).stdout)


@pytest.fixture(params=[*SCENARIOS, "k8s/base", "k8s/overlays/dev"], ids=str)
def manifests(request: pytest.FixtureRequest, renderer: Renderer) -> list[dict[str, Any]]:
    if isinstance(request.param, str):
        kubectl: str = request.getfixturevalue("kubectl")
        return kustomize_docs(kubectl, request.param)
    return renderer.docs(*values_args(request.param))


def resolve(item: dict[str, Any], pod_name: str) -> str:
    """A plausible runtime value of one env entry (secrets and the downward API)."""
    if "value" in item:
        return str(item["value"])
    source = item["valueFrom"]
    if "fieldRef" in source:
        return {
            "metadata.name": pod_name,
            "metadata.namespace": "collab",
            "metadata.labels['apps.kubernetes.io/pod-index']": "0",
        }[source["fieldRef"]["fieldPath"]]
    if item["name"] == "REDIS_URL":
        return "redis://external.example:6379/0"
    return "s" * 48


def test_every_rendered_variable_is_read_by_its_service(manifests: list[dict[str, Any]]) -> None:
    for workload in workloads(manifests):
        if component(workload) == "redis":
            continue
        env = {e["name"] for e in container(workload)["env"] if OURS.match(e["name"])}
        unknown = env - set(accepted(settings_class(component(workload))))
        assert unknown == set(), f"{workload['metadata']['name']} sets {sorted(unknown)}"


def test_rendered_values_pass_the_settings_validation(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for workload in workloads(manifests):
        if component(workload) == "redis":
            continue
        spec = container(workload)
        name = workload["metadata"]["name"]
        with monkeypatch.context() as patch:
            for variable in list(os.environ):
                if OURS.match(variable) or variable == "POD_NAMESPACE":
                    patch.delenv(variable)
            for item in spec["env"]:
                patch.setenv(item["name"], resolve(item, f"{name}-7d9c-x2x"))
            settings: Any = settings_class(component(workload))()
        ports = {p["containerPort"] for p in spec["ports"]}
        assert settings.port in ports
        assert settings.redis_url
        if component(workload) == "gateway":
            assert settings.gateway_id.startswith(name)
        if component(workload) == "operator":
            assert settings.namespace == "collab"
            assert settings.metrics_port in ports


def test_chart_values_reach_the_settings(
    renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = renderer.docs("--values", str(CHART / "ci" / "operator-off-values.yaml"))
    (gateway,) = [w for w in workloads(docs) if component(w) == "gateway"]
    for item in container(gateway)["env"]:
        monkeypatch.setenv(item["name"], resolve(item, "collab-gateway-1"))
    settings: Any = settings_class("gateway")()
    assert settings.drain_seconds == 20
    assert settings.heartbeat_ms == 15000
    assert settings.allowed_origins == ["https://docs.example.com"]
    assert settings.max_message_bytes == 1048576


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("service", ["gateway", "edit-transform", "presence"])
def test_chart_settings_cover_the_service_settings(service: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = schema["properties"][VALUES_KEY[service]]["properties"]["settings"]["properties"]
    in_chart = {camel_to_snake(key) for key in keys}
    in_code = set(settings_class(service).model_fields) - MANAGED[service]
    assert in_chart == in_code


@pytest.mark.parametrize("service", ["gateway", "edit-transform", "presence"])
def test_settings_keys_render_as_the_variable_names(
    renderer: Renderer, service: str, tmp_path: Any
) -> None:
    """Every key of the schema, set at once, renders a variable the service reads."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = schema["properties"][VALUES_KEY[service]]["properties"]["settings"]["properties"]
    samples: dict[str, Callable[[dict[str, Any]], Any]] = {
        "integer": lambda s: max(s.get("minimum", 1), 1),
        "number": lambda s: 1.5,
        "boolean": lambda s: True,
        "string": lambda s: s.get("enum", ["x"])[0],
        "array": lambda s: ["https://a.example"],
    }
    settings = {key: samples[spec["type"]](spec) for key, spec in keys.items()}
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({VALUES_KEY[service]: {"settings": settings}}))
    docs = renderer.docs("--values", str(values))
    (workload,) = [w for w in workloads(docs) if component(w) == service]
    names = accepted(settings_class(service))
    rendered = {e["name"]: names.get(e["name"]) for e in container(workload)["env"]}
    for key in keys:
        assert camel_to_snake(key) in rendered.values(), key
