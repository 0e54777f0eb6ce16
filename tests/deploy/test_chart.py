"""The Helm chart: lint, render, validate against Kubernetes' schemas, and what it renders."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import (
    ALL_APIS,
    CHART,
    SCENARIOS,
    Renderer,
    by_kind,
    component,
    container,
    one,
    run,
    scenario_id,
    values_args,
    workloads,
)

Docs = list[dict[str, Any]]
COLLAB_COMPONENTS = {"gateway": 8000, "edit-transform": 8001, "presence": 8002}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def collab_workloads(docs: Docs) -> Iterator[dict[str, Any]]:
    return (doc for doc in workloads(docs) if component(doc) != "redis")


# -- lint and schema validation ---------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_lint_strict(helm: str, values: Path | None) -> None:
    result = run([helm, "lint", "--strict", str(CHART), *values_args(values)])
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
@pytest.mark.parametrize("apis", ["bare", "all-apis"])
def test_render_validates(
    renderer: Renderer,
    validate_manifests: Callable[[str, str], None],
    values: Path | None,
    apis: str,
) -> None:
    extra = ALL_APIS if apis == "all-apis" else ()
    text = renderer.text("--include-crds", *extra, *values_args(values))
    validate_manifests(text, f"{scenario_id(values)}-{apis}")


def test_kube_version_below_the_range_is_refused(renderer: Renderer) -> None:
    assert "incompatible with Kubernetes v1.27.0" in renderer.fails("--kube-version", "1.27.0")


def test_values_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path or "/")
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}/{index}")

    walk(schema, "")
    assert open_objects == []


def leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from leaf_paths(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, re.MULTILINE))
    values = yaml.safe_load(text)
    undocumented = [
        path
        for path in leaf_paths(values)
        if not any(path == doc or path.startswith(doc + ".") for doc in documented)
    ]
    assert undocumented == []
    known = set(leaf_paths(values))
    stale = [
        doc
        for doc in documented
        if not any(path == doc or path.startswith(doc + ".") for path in known)
    ]
    assert stale == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "gateway.replicaCount=two"], "got string, want integer"),
        (["--set", "gateway.settings.maxDocumentChars=5"], "maxDocumentChars"),
        (["--set", "redis.bundled.appendfsync=sometimes"], "appendfsync"),
        (["--set", "ingressShards=0"], "ingressShards"),
        (["--set", "replicas=3"], "additional properties 'replicas'"),
        (["--set", "presence.partitions=0"], "partitions"),
    ],
)
def test_schema_refuses(renderer: Renderer, args: list[str], message: str) -> None:
    assert message in renderer.fails(*args)


# -- bad combinations fail with a readable message --------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "redis.url=redis://elsewhere:6379/0"],
            "redis: both the bundled Redis (redis.bundled.enabled=true) and an external one",
        ),
        (
            ["--set", "redis.existingSecret=my-redis"],
            "redis: both the bundled Redis (redis.bundled.enabled=true) and an external one",
        ),
        (
            ["--set", "redis.bundled.enabled=false"],
            "redis: no Redis: redis.bundled.enabled=false needs redis.url or redis.existingSecret",
        ),
        (
            [
                "--set",
                "redis.bundled.enabled=false",
                "--set",
                "redis.url=redis://r:6379",
                "--set",
                "redis.existingSecret=s",
            ],
            "redis: set either redis.url or redis.existingSecret, not both.",
        ),
        (
            ["--set", "operator.requireCrd=true"],
            "operator: operator.enabled=true needs the GatewayPool CRD",
        ),
        (
            [
                "--set",
                "operator.gatewayPool.minReplicas=5",
                "--set",
                "operator.gatewayPool.maxReplicas=3",
            ],
            "operator.gatewayPool.minReplicas (5) is greater than "
            "operator.gatewayPool.maxReplicas (3)",
        ),
        (
            ["--set", "httpRoute.enabled=true"],
            "httpRoute: httpRoute.enabled=true needs httpRoute.parentRefs",
        ),
        (
            ["--set", "presence.partitions=5"],
            "presence: presence.partitions (5) is greater than ingressShards (4)",
        ),
    ],
    ids=[
        "bundled-and-url",
        "bundled-and-secret",
        "no-redis",
        "url-and-secret",
        "operator-without-crd",
        "pool-min-above-max",
        "route-without-parent",
        "presence-partitions-above-shards",
    ],
)
def test_bad_combinations_fail(renderer: Renderer, args: list[str], message: str) -> None:
    error = renderer.fails(*args)
    assert "VALUES VALIDATION:" in error
    assert message in error


def test_crd_check_passes_when_the_api_is_served(renderer: Renderer) -> None:
    docs = renderer.docs(
        "--set",
        "operator.requireCrd=true",
        "--api-versions",
        "collab.gremlins.dev/v1alpha1/GatewayPool",
    )
    assert by_kind(docs, "GatewayPool")


# -- what every scenario renders --------------------------------------------------------


def test_collab_pods_are_locked_down(scenario: Docs) -> None:
    for workload in workloads(scenario):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["enableServiceLinks"] is False, name
        spec = container(workload)
        security = spec["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert spec["resources"]["requests"], name
        assert spec["resources"]["limits"]["memory"], name
        if component(workload) == "operator":
            assert pod["automountServiceAccountToken"] is True
            assert pod["serviceAccountName"] == name
        else:
            assert pod["automountServiceAccountToken"] is False, name
            assert "serviceAccountName" not in pod, name


def test_collab_containers_write_only_tmp(renderer: Renderer) -> None:
    # values-dev.yaml turns the read-only root off for live update; every other scenario
    # keeps it.
    for values in [v for v in SCENARIOS if v is None or v.name != "values-dev.yaml"]:
        docs = renderer.docs(*ALL_APIS, *values_args(values))
        for workload in collab_workloads(docs):
            spec = container(workload)
            assert spec["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
            volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]


def test_probes_and_ports(scenario: Docs) -> None:
    seen = set()
    for workload in collab_workloads(scenario):
        name = component(workload)
        seen.add(name)
        spec = container(workload)
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        if name == "operator":
            assert ports == {"health": 8080, "metrics": 9100}
            assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
            assert "readinessProbe" not in spec
            assert spec["args"][0] == "operator"
            continue
        assert ports == {"http": COLLAB_COMPONENTS[name]}
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert spec["args"] == [{"edit-transform": "transform"}.get(name, name)]
    assert seen >= set(COLLAB_COMPONENTS)


def test_one_image_for_every_service(scenario: Docs) -> None:
    images = {container(w)["image"] for w in collab_workloads(scenario)}
    assert len(images) == 1


def test_operator_runs_alone(scenario: Docs) -> None:
    operator = [w for w in collab_workloads(scenario) if component(w) == "operator"]
    for workload in operator:
        assert workload["spec"]["replicas"] == 1
        assert workload["spec"]["strategy"] == {"type": "Recreate"}


def test_presence_runs_one_pod_per_partition(scenario: Docs) -> None:
    presence = one(scenario, "StatefulSet", "collab-presence")
    partitions = presence["spec"]["replicas"]
    spec = container(presence)
    assert env_value(spec, "COLLAB_PRESENCE_PARTITIONS") == str(partitions)
    # The partition is the pod's index and the consumer its name: both stable per pod.
    by_name = {item["name"]: item for item in spec["env"]}
    assert by_name["COLLAB_PRESENCE_PARTITION"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert by_name["COLLAB_PRESENCE_CONSUMER"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    shards = int(env_value(spec, "COLLAB_INGRESS_SHARDS") or 0)
    assert 1 <= partitions <= shards
    assert presence["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert presence["spec"]["serviceName"] in {
        s["metadata"]["name"] for s in by_kind(scenario, "Service")
    }


def test_presence_partitions_follow_the_values(renderer: Renderer) -> None:
    docs = renderer.docs("--set", "ingressShards=6", "--set", "presence.partitions=4")
    presence = one(docs, "StatefulSet", "collab-presence")
    assert presence["spec"]["replicas"] == 4
    assert env_value(container(presence), "COLLAB_PRESENCE_PARTITIONS") == "4"
    assert env_value(container(presence), "COLLAB_INGRESS_SHARDS") == "6"


def env_value(spec: dict[str, Any], name: str) -> str | None:
    for item in spec["env"]:
        if item["name"] == name:
            return item.get("value")
    return None


def test_gateway_drains_within_its_grace_period(scenario: Docs) -> None:
    gateway = one(scenario, "Deployment", "collab-gateway")
    pod = gateway["spec"]["template"]["spec"]
    spec = container(gateway)
    sleep = int(spec["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(env_value(spec, "COLLAB_GATEWAY_DRAIN_SECONDS") or 10)
    # preStop, then the drain window, then uvicorn's 5 s graceful shutdown.
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain + 5
    for pool in by_kind(scenario, "GatewayPool"):
        assert pool["spec"]["drainSeconds"] == pod["terminationGracePeriodSeconds"]


def test_operator_owns_gateway_replicas(scenario: Docs) -> None:
    gateway = one(scenario, "Deployment", "collab-gateway")
    operator = by_kind(scenario, "GatewayPool")
    assert ("replicas" in gateway["spec"]) == (not operator)


def test_disruption_budgets_and_services_select_their_pods(scenario: Docs) -> None:
    pods = {w["metadata"]["name"]: w for w in workloads(scenario)}
    for budget in by_kind(scenario, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        matched = [n for n, w in pods.items() if selects(selector, pod_labels(w))]
        assert matched == [budget["metadata"]["name"]]
    for workload in collab_workloads(scenario):
        names = {b["metadata"]["name"] for b in by_kind(scenario, "PodDisruptionBudget")}
        assert workload["metadata"]["name"] in names
    for service in by_kind(scenario, "Service"):
        matched = [w for w in pods.values() if selects(service["spec"]["selector"], pod_labels(w))]
        assert len(matched) == 1, service["metadata"]["name"]
        port_names = {p["name"] for p in container(matched[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_multi_replica_components_spread(scenario: Docs) -> None:
    for kind, name, revision in (
        ("Deployment", "collab-gateway", "pod-template-hash"),
        ("Deployment", "collab-edit-transform", "pod-template-hash"),
        ("StatefulSet", "collab-presence", "controller-revision-hash"),
    ):
        workload = one(scenario, kind, name)
        constraints = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in constraints:
            assert selects(constraint["labelSelector"]["matchLabels"], pod_labels(workload))
            # The revision label the controller puts on its pods, so that a rollout's
            # new pods spread among themselves.
            assert constraint["matchLabelKeys"] == [revision]


def test_secrets_never_travel_in_clear(scenario: Docs) -> None:
    for workload in collab_workloads(scenario):
        for item in container(workload)["env"]:
            if item["name"] in ("COLLAB_JWT_SECRET", "OTEL_EXPORTER_OTLP_HEADERS"):
                assert "secretKeyRef" in item["valueFrom"]
            if item["name"] == "REDIS_URL" and "value" in item:
                # Only the bundled Redis' address, which holds no password.
                assert re.fullmatch(r"redis://collab-redis:6379/0", item["value"])


def test_only_collab_pods_reach_the_bundled_redis(scenario: Docs) -> None:
    redis = [w for w in workloads(scenario) if component(w) == "redis"]
    policies = by_kind(scenario, "NetworkPolicy")
    if not redis:
        assert policies == []
        return
    (policy,) = policies
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(redis[0]))
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    selector = peer["podSelector"]
    (expression,) = selector["matchExpressions"]
    allowed = set(expression["values"])

    def admitted(labels: dict[str, str]) -> bool:
        return selects(selector["matchLabels"], labels) and labels.get(expression["key"]) in allowed

    for workload in workloads(scenario):
        assert admitted(pod_labels(workload)) == (component(workload) != "redis")
    for pod in by_kind(scenario, "Pod"):  # the helm test pod
        assert not admitted(pod["metadata"]["labels"])


def test_bundled_redis_keeps_every_acknowledged_write(renderer: Renderer) -> None:
    docs = renderer.docs()
    config = one(docs, "ConfigMap", "collab-redis")["data"]["redis.conf"]
    settings = dict(
        line.split(" ", 1) for line in config.splitlines() if line and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"
    redis = one(docs, "StatefulSet", "collab-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_jwt_secret_is_generated_once(renderer: Renderer) -> None:
    secret = one(renderer.docs(), "Secret", "collab-jwt")
    assert len(secret["data"]["jwt-secret"]) >= 64
    template = (CHART / "templates" / "secret-jwt.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template
    # The values can name a Secret but never hold the secret itself.
    jwt = yaml.safe_load((CHART / "values.yaml").read_text())["jwt"]
    assert set(jwt) == {"existingSecret", "existingSecretKey", "audience", "leewaySeconds"}


def test_external_redis_url_goes_through_a_secret(renderer: Renderer) -> None:
    docs = renderer.docs("--values", str(CHART / "ci" / "operator-off-values.yaml"))
    secret = one(docs, "Secret", "collab-redis-url")
    assert secret["stringData"]["redis-url"] == "redis://redis.data.svc:6379/0"
    for workload in collab_workloads(docs):
        (item,) = [e for e in container(workload)["env"] if e["name"] == "REDIS_URL"]
        assert item["valueFrom"]["secretKeyRef"] == {"name": "collab-redis-url", "key": "redis-url"}


def test_an_external_redis_cluster_and_waiting_for_a_replica(renderer: Renderer) -> None:
    url = "rediss+cluster://:pw@redis-0.redis.data.svc:6379/0"
    docs = renderer.docs(
        "--set", "redis.bundled.enabled=false",
        "--set", f"redis.url={url}",
        "--set", "transform.settings.waitReplicas=1",
    )  # fmt: skip
    assert one(docs, "Secret", "collab-redis-url")["stringData"]["redis-url"] == url
    (transform,) = [w for w in collab_workloads(docs) if component(w) == "edit-transform"]
    env = {e["name"]: e.get("value") for e in container(transform)["env"]}
    assert env["COLLAB_TRANSFORM_WAIT_REPLICAS"] == "1"
    assert "url" in renderer.fails(
        "--set", "redis.bundled.enabled=false", "--set", "redis.url=cluster://x"
    )


def test_ingress_routes_the_public_paths_by_document(renderer: Renderer) -> None:
    docs = renderer.docs("--values", str(CHART / "ci" / "ingress-on-values.yaml"))
    ingress = one(docs, "Ingress", "collab-gateway")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$request_uri"
    (rule,) = ingress["spec"]["rules"]
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert paths == {("/v1", "Prefix"), ("/d", "Prefix"), ("/static", "Prefix"), ("/", "Exact")}
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": "collab-gateway", "port": {"name": "http"}}
    route = one(docs, "HTTPRoute", "collab-gateway")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "collab-gateway", "port": 8000}]


def test_monitoring_renders_only_when_its_api_exists(renderer: Renderer) -> None:
    bare = renderer.docs()
    assert by_kind(bare, "ServiceMonitor") == []
    assert by_kind(bare, "PrometheusRule") == []
    full = renderer.docs(*ALL_APIS)
    assert len(by_kind(full, "ServiceMonitor")) == 1
    assert len(by_kind(full, "PrometheusRule")) == 1
    forced = renderer.docs(
        "--set", "serviceMonitor.force=true", "--set", "prometheusRule.force=true"
    )
    assert len(by_kind(forced, "ServiceMonitor")) == 1


def queried_jobs() -> set[str]:
    texts = [p.read_text() for p in (CHART / "dashboards").glob("*.json")]
    texts.append((CHART / "alerts" / "collab-rules.yaml").read_text())
    return {job for text in texts for job in re.findall(r'job=\\?"(collab-[a-z]+)', text)}


def test_scrape_jobs_are_the_ones_dashboards_and_alerts_query(scenario: Docs) -> None:
    (monitor,) = by_kind(scenario, "ServiceMonitor")
    label = monitor["spec"]["jobLabel"]
    selector = monitor["spec"]["selector"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    jobs = set()
    for service in by_kind(scenario, "Service"):
        labels = service["metadata"]["labels"]
        if selects(selector["matchLabels"], labels) and label in labels:
            assert {p["name"] for p in service["spec"]["ports"]} & ports
            jobs.add(labels[label])
    assert queried_jobs()
    assert queried_jobs() - {"collab-operator"} <= jobs
    expected = {"collab-gateway", "collab-transform", "collab-presence"}
    if by_kind(scenario, "GatewayPool"):
        expected.add("collab-operator")
    assert jobs == expected


def test_dashboards_are_configmaps_for_the_grafana_sidecar(scenario: Docs) -> None:
    files = {p.name: p.read_text() for p in (CHART / "dashboards").glob("*.json")}
    maps = [
        m for m in by_kind(scenario, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]
    assert {name for m in maps for name in m["data"]} == set(files)
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, body),) = config_map["data"].items()
        assert json.loads(body) == json.loads(files[name])


def test_prometheus_rule_is_the_rule_file(scenario: Docs) -> None:
    (rule,) = by_kind(scenario, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "alerts" / "collab-rules.yaml").read_text())


def test_helm_test_pod_checks_gateway_readiness(renderer: Renderer) -> None:
    (pod,) = by_kind(renderer.docs(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "curl"
    assert command[-1] == "http://collab-gateway:8000/readyz"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_notes_tell_how_to_connect(helm: str) -> None:
    result = run(
        [helm, "install", "collab", str(CHART), "--dry-run=client", "--namespace", "collab"]
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n collab port-forward svc/collab-gateway 8000:8000" in notes
    assert "ws://127.0.0.1:8000/v1/collaborate/<document>" in notes
    assert "helm test collab -n collab" in notes
