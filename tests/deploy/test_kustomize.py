"""The plain manifests: k8s/base is the chart's render (generate.py), the dev overlay
patches it; both build with `kubectl kustomize` and validate like the chart."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest
from deploykit import ROOT, by_kind, component, container, documents, one, run, workloads

FOLDERS = ["k8s/base", "k8s/overlays/dev"]


def build(kubectl: str, folder: str) -> str:
    return run([kubectl, "kustomize", str(ROOT / folder)]).stdout


def test_base_is_the_current_chart_render(helm: str) -> None:
    spec = importlib.util.spec_from_file_location("generate_base", ROOT / "k8s/base/generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    current = (ROOT / "k8s" / "base" / "collab.yaml").read_text()
    assert current == generate.render(helm), "k8s/base is stale: run k8s/base/generate.py"


@pytest.mark.parametrize("folder", FOLDERS)
def test_kustomize_builds_and_validates(
    kubectl: str, validate_manifests: Callable[[str, str], None], folder: str
) -> None:
    validate_manifests(build(kubectl, folder), folder.replace("/", "-"))


def test_overlay_runs_the_same_workloads(kubectl: str) -> None:
    base = documents(build(kubectl, "k8s/base"))
    dev = documents(build(kubectl, "k8s/overlays/dev"))

    def names(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        # The dev secret is the overlay's own; the namespace is renamed.
        skip = ("Secret", "Namespace")
        return sorted((d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] not in skip)

    assert names(dev) == names(base)
    assert {d["metadata"].get("namespace", "collab-dev") for d in dev} == {"collab-dev"}
    assert one(dev, "Namespace", "collab-dev")


def test_overlay_is_for_development(kubectl: str) -> None:
    dev = documents(build(kubectl, "k8s/overlays/dev"))
    images = {container(w)["image"] for w in workloads(dev) if component(w) != "redis"}
    assert images == {"collab:dev"}
    gateway = container(one(dev, "Deployment", "collab-gateway"))
    env = {e["name"]: e for e in gateway["env"]}
    assert env["COLLAB_GATEWAY_DEV_TOKENS"]["value"] == "true"
    (secret,) = by_kind(dev, "Secret")
    assert (
        env["COLLAB_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    )
    redis = one(dev, "StatefulSet", "collab-redis")
    assert "volumeClaimTemplates" not in redis["spec"]
    # Tilt's live update syncs sources into every collab container (Deployments and the
    # presence StatefulSet alike); the base keeps them read-only.
    base = documents(build(kubectl, "k8s/base"))
    for docs, writable in ((dev, True), (base, False)):
        collab = [w for w in workloads(docs) if component(w) != "redis"]
        assert {component(w) for w in collab} == {
            "gateway",
            "edit-transform",
            "presence",
            "operator",
        }
        for workload in collab:
            read_only = container(workload)["securityContext"]["readOnlyRootFilesystem"]
            assert read_only is not writable, workload["metadata"]["name"]


def test_base_runs_under_the_restricted_pod_security_standard(kubectl: str) -> None:
    base = documents(build(kubectl, "k8s/base"))
    (namespace,) = by_kind(base, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"]["labels"]["app.kubernetes.io/managed-by"] for d in base} == {"kustomize"}
