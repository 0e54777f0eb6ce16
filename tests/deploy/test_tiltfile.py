"""The Tiltfile, evaluated with starlark-go (Tilt's own interpreter) and recording
stand-ins for Tilt's builtins; helm() and kustomize() render for real, so the resources
it declares are checked against the manifests it would apply."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from deploykit import ROOT, component, container, documents, need_module, run, workloads

TILTFILE = ROOT / "Tiltfile"


@dataclass
class Tilt:
    """What one evaluation of the Tiltfile asked Tilt to do."""

    helm: str
    kubectl: str
    settings: dict[str, Any]
    calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def record(self, name: str, result: Any = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.setdefault(name, []).append((args, kwargs))
            return result(*args, **kwargs) if callable(result) else result

        return call

    def render_helm(self, chart: str, **kwargs: Any) -> str:
        args = [self.helm, "template", kwargs["name"], str(ROOT / chart)]
        args += ["--namespace", kwargs["namespace"]]
        if not kwargs.get("skip_crds", False):
            args.append("--include-crds")  # as Tilt's helm() does
        for values in kwargs.get("values", []):
            args += ["--values", str(ROOT / values)]
        for flag in kwargs.get("set", []):
            args += ["--set", flag]
        return run(args).stdout

    def render_kustomize(self, folder: str) -> str:
        return run([self.kubectl, "kustomize", str(ROOT / folder)]).stdout

    def read_yaml(self, path: str, default: Any = None) -> Any:
        assert path == "tilt-settings.yaml"
        return self.settings or default

    def k8s_yaml(self, text: str) -> None:
        self.manifests += documents(text)

    def fail(self, message: str) -> None:
        raise RuntimeError(message)

    def globals(self) -> dict[str, Any]:
        return {
            "version_settings": self.record("version_settings"),
            "read_yaml": self.read_yaml,
            "allow_k8s_contexts": self.record("allow_k8s_contexts"),
            "docker_build_with_restart": self.record("docker_build_with_restart"),
            "sync": lambda local, remote: {"sync": [local, remote]},
            "run": lambda command, trigger=(): {"run": command, "trigger": list(trigger)},
            "helm": self.record("helm", self.render_helm),
            "kustomize": self.record("kustomize", self.render_kustomize),
            "blob": lambda text: text,
            "k8s_yaml": self.k8s_yaml,
            "k8s_resource": self.record("k8s_resource"),
            "local_resource": self.record("local_resource"),
            "link": lambda url, name="": {"url": url, "name": name},
            "helm_repo": self.record("helm_repo"),
            "helm_resource": self.record("helm_resource"),
            "fail": self.fail,
            "TRIGGER_MODE_MANUAL": "manual",
        }

    def resources(self) -> dict[str, dict[str, Any]]:
        """Tilt resource name -> its k8s_resource keyword arguments."""
        result = {}
        for args, kwargs in self.calls.get("k8s_resource", []):
            name = args[0] if args else kwargs["new_name"]
            assert name not in result, f"{name} declared twice"
            result[name] = {"workload": bool(args), **kwargs}
        return result


LOADS = re.compile(r"^load\((?P<args>[^)]*)\)\s*$", re.MULTILINE)


def evaluate(helm: str, kubectl: str, settings: dict[str, Any]) -> Tilt:
    starlark = need_module("starlark_go", "starlark-go")
    # Tilt allows top-level if and for; so must the interpreter.
    starlark.configure_starlark(allow_global_reassign=True)
    tilt = Tilt(helm, kubectl, settings)
    source = TILTFILE.read_text()
    # load() of Tilt extensions: their symbols are stand-ins here.
    loaded = [
        symbol.strip().strip("\"'")
        for match in LOADS.finditer(source)
        for symbol in match.group("args").split(",")[1:]
    ]
    # starlark-go keeps no reference to the functions: `available` holds them while it runs.
    available = tilt.globals()
    assert set(loaded) <= set(available), f"no stand-in for {set(loaded) - set(available)}"
    interpreter = starlark.Starlark(globals=available)
    interpreter.exec(LOADS.sub("", source), filename="Tiltfile")
    return tilt


VARIANTS = {
    "defaults": {},
    "operator-off": {"operator": False},
    "kustomize": {"deploy": "kustomize"},
    "observability": {"observability": True, "namespace": "collab-obs"},
}


@pytest.fixture(params=list(VARIANTS), ids=str)
def tilt(request: pytest.FixtureRequest, helm: str, kubectl: str) -> Tilt:
    return evaluate(helm, kubectl, VARIANTS[request.param])


def test_resources_are_the_rendered_workloads(tilt: Tilt) -> None:
    rendered = {w["metadata"]["name"] for w in workloads(tilt.manifests)}
    declared = {name for name, r in tilt.resources().items() if r["workload"]}
    assert declared == rendered


def test_grouped_objects_exist(tilt: Tilt) -> None:
    present = {f"{d['metadata']['name']}:{d['kind']}".lower() for d in tilt.manifests}
    for name, resource in tilt.resources().items():
        for selector in resource.get("objects", []):
            assert selector.lower() in present, f"{name}: {selector}"


def test_every_resource_is_labelled_and_deps_exist(tilt: Tilt) -> None:
    resources = tilt.resources()
    names = set(resources)
    names |= {args[0] for args, _ in tilt.calls.get("local_resource", [])}
    names |= {args[0] for args, _ in tilt.calls.get("helm_resource", [])}
    names |= {args[0] for args, _ in tilt.calls.get("helm_repo", [])}
    for name, resource in resources.items():
        assert resource["labels"], name
        assert set(resource.get("resource_deps", [])) <= names, name


def test_port_forwards_reach_container_ports(tilt: Tilt) -> None:
    by_name = {w["metadata"]["name"]: w for w in workloads(tilt.manifests)}
    for name, resource in tilt.resources().items():
        for forward in resource.get("port_forwards", []):
            remote = int(forward.split(":")[1])
            ports = {p["containerPort"] for p in container(by_name[name])["ports"]}
            assert remote in ports, f"{name}: {forward}"
    gateway = tilt.resources()["collab-gateway"]
    assert gateway["port_forwards"] == ["8000:8000"]
    assert {"url": "http://localhost:8000/", "name": "demo editor"} in gateway["links"]


def test_the_built_image_is_the_one_deployed(tilt: Tilt) -> None:
    ((args, kwargs),) = tilt.calls["docker_build_with_restart"]
    image, context = args
    assert context == "."
    assert kwargs["target"] == "dev"
    assert kwargs["entrypoint"] == ["collab"]
    for workload in workloads(tilt.manifests):
        if component(workload) != "redis":
            assert container(workload)["image"].split(":")[0] == image
            # docker_build_with_restart wraps the ENTRYPOINT: the pods may set args only.
            assert "command" not in container(workload)


def test_live_update_syncs_the_python_sources(tilt: Tilt) -> None:
    ((_, kwargs),) = tilt.calls["docker_build_with_restart"]
    steps = kwargs["live_update"]
    synced = {step["sync"][0] for step in steps if "sync" in step}
    assert synced >= {"services/", "clients/python/", "operator/"}
    for local in synced:
        assert (ROOT / local).exists()
        assert any(local.startswith(only) for only in kwargs["only"])
    (install,) = [step for step in steps if "run" in step]
    assert install["trigger"] == ["pyproject.toml"]


def test_only_local_clusters() -> None:
    tilt = Tilt("", "", {})
    ((contexts,), _) = evaluate_contexts(tilt)
    assert contexts
    for context in contexts:
        assert context.startswith(("kind-", "k3d-")) or context in ("minikube", "docker-desktop")


def evaluate_contexts(tilt: Tilt) -> tuple[tuple[Any, ...], dict[str, Any]]:
    starlark = need_module("starlark_go", "starlark-go")
    starlark.configure_starlark(allow_global_reassign=True)
    source = LOADS.sub("", TILTFILE.read_text()).split("# Actual work happens here")[0]
    builtins = tilt.globals()  # starlark-go keeps no reference: hold them while it runs
    interpreter = starlark.Starlark(globals=builtins)
    interpreter.exec(
        source + "\ncheck_contexts(settings['allowed_contexts'])\n", filename="Tiltfile"
    )
    (call,) = tilt.calls["allow_k8s_contexts"]
    return call


def test_a_remote_context_is_refused(helm: str, kubectl: str) -> None:
    starlark = need_module("starlark_go", "starlark-go")
    with pytest.raises(starlark.EvalError, match="is not a local cluster"):
        evaluate(helm, kubectl, {"allowed_contexts": ["gke_prod_europe-west1_main"]})


def test_observability_is_opt_in(helm: str, kubectl: str) -> None:
    assert "helm_resource" not in evaluate(helm, kubectl, {}).calls
    tilt = evaluate(helm, kubectl, {"observability": True})
    ((args, kwargs),) = tilt.calls["helm_resource"]
    assert args[1] == "prometheus-community/kube-prometheus-stack"
    assert "--set=grafana.sidecar.dashboards.searchNamespace=ALL" in kwargs["flags"]
    kinds = {d["kind"] for d in tilt.manifests}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    dashboards = [
        d for d in tilt.manifests if "grafana_dashboard" in d["metadata"].get("labels", {})
    ]
    assert len(dashboards) == len(list((ROOT / "charts/collab/dashboards").glob("*.json")))


def test_settings_example_lists_the_defaults(helm: str, kubectl: str) -> None:
    example = yaml.safe_load((ROOT / "tilt-settings.example.yaml").read_text())
    tilt = evaluate(helm, kubectl, example)
    defaults = evaluate(helm, kubectl, {})
    assert tilt.manifests == defaults.manifests
    assert tilt.resources() == defaults.resources()
    starlark = need_module("starlark_go", "starlark-go")
    builtins = Tilt(helm, kubectl, {}).globals()  # held: starlark-go keeps no reference
    interpreter = starlark.Starlark(globals=builtins)
    interpreter.exec(
        LOADS.sub("", TILTFILE.read_text()).split("# Actual work happens here")[0],
        filename="Tiltfile",
    )
    assert set(example) == set(interpreter.get("settings"))
