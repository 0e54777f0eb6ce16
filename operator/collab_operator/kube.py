"""The Kubernetes API, as the operator's handlers use it: the only module that calls it.

kopf itself watches GatewayPools, writes their status and posts Events; everything else
goes through :class:`Kube` (lightkube): read the Deployment, list its pods, set a pod's
deletion cost, and patch the Deployment's ``scale`` subresource. The Deployment stays
owned by Helm: only ``replicas`` changes, through ``/scale``, which is also all the RBAC
Role has to allow (``deployments/scale`` patch, not ``deployments`` patch).
``collab_operator.rbac`` lists every call made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import httpx2
from lightkube import ApiError, AsyncClient, operators
from lightkube.models.meta_v1 import LabelSelector
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

#: ReplicaSets remove the pods with the lowest cost first (Kubernetes docs, "ReplicaSet",
#: pod deletion cost; beta and on by default since 1.22).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: The lowest cost there is (the annotation is an int32): this pod goes first.
LOWEST_COST = str(-(2**31))
FIELD_MANAGER = "collab-operator"


class KubeError(Exception):
    """A call to the Kubernetes API failed; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True, slots=True)
class DeploymentState:
    name: str
    #: ``spec.replicas``: what the Deployment is asked to run.
    replicas: int
    #: ``status.replicas``: the pods it has.
    pods: int
    selector: list[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    terminating: bool
    deletion_cost: str | None


def selector_of(selector: LabelSelector | None) -> list[tuple[str, Any]]:
    """A lightkube label selector for a Deployment's ``spec.selector``."""
    if selector is None:
        return []
    pairs: list[tuple[str, Any]] = sorted((selector.matchLabels or {}).items())
    for expression in selector.matchExpressions or []:
        values = expression.values or []
        match expression.operator:
            case "In":
                pairs.append((expression.key, operators.in_(values)))
            case "NotIn":
                pairs.append((expression.key, operators.not_in(values)))
            case "Exists":
                pairs.append((expression.key, operators.exists()))
            case "DoesNotExist":
                pairs.append((expression.key, operators.not_exists()))
            case other:
                raise KubeError(f"unknown label selector operator {other!r}")
    return pairs


def _error(exc: httpx2.HTTPError, what: str) -> KubeError:
    if isinstance(exc, ApiError):
        return KubeError(f"{what}: {exc.status.message or exc}", exc.status.code)
    if isinstance(exc, httpx2.HTTPStatusError):
        # lightkube makes an ApiError only of a reply typed exactly "application/json".
        code = exc.response.status_code
        return KubeError(f"{what}: {code} {exc.response.reason_phrase}", code)
    return KubeError(f"{what}: {exc}")


class Kube:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: its service account; elsewhere: ``$KUBECONFIG`` or ``~/.kube/config``."""
        return cls(AsyncClient(field_manager=FIELD_MANAGER))

    async def close(self) -> None:
        await self.client.close()

    async def deployment(self, namespace: str, name: str) -> DeploymentState:
        try:
            found = await self.client.get(Deployment, name, namespace=namespace)
        except httpx2.HTTPError as exc:
            raise _error(exc, f"deployment {namespace}/{name}") from exc
        spec, status = found.spec, found.status
        replicas = spec.replicas if spec is not None and spec.replicas is not None else 1
        return DeploymentState(
            name=name,
            replicas=replicas,
            pods=(status.replicas or 0) if status is not None else 0,
            selector=selector_of(spec.selector if spec is not None else None),
        )

    async def pods(self, namespace: str, selector: list[tuple[str, Any]]) -> list[PodState]:
        """The Deployment's pods that still exist: not Succeeded or Failed (evicted)."""
        result = []
        try:
            # lightkube's build_selector takes a list of pairs as well as a dict; a list
            # keeps a key that matchLabels and matchExpressions both name.
            labels = cast("dict[str, Any]", selector)
            async for pod in self.client.list(Pod, namespace=namespace, labels=labels):
                meta, status = pod.metadata, pod.status
                if meta is None or meta.name is None:
                    continue
                if status is not None and status.phase in ("Succeeded", "Failed"):
                    continue
                annotations = meta.annotations or {}
                result.append(
                    PodState(
                        name=meta.name,
                        terminating=meta.deletionTimestamp is not None,
                        deletion_cost=annotations.get(DELETION_COST),
                    )
                )
        except httpx2.HTTPError as exc:
            raise _error(exc, f"pods in {namespace}") from exc
        return sorted(result, key=lambda pod: pod.name)

    async def set_deletion_cost(self, namespace: str, pod: str, cost: str | None) -> None:
        """Set (or, with ``None``, remove) a pod's deletion cost."""
        body = {"metadata": {"annotations": {DELETION_COST: cost}}}
        try:
            await self.client.patch(Pod, pod, body, namespace=namespace, patch_type=PatchType.MERGE)
        except httpx2.HTTPError as exc:
            raise _error(exc, f"pod {namespace}/{pod}") from exc

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        try:
            await self.client.patch(
                Deployment.Scale, name, body, namespace=namespace, patch_type=PatchType.MERGE
            )
        except httpx2.HTTPError as exc:
            raise _error(exc, f"scale of deployment {namespace}/{name}") from exc
