"""Every Kubernetes API call the operator makes, as RBAC rules: what its Role must grant.

kopf's share is fixed by the settings in ``handlers.configure``: with resource scanning
off it needs neither CustomResourceDefinitions nor Namespaces, and in standalone mode no
peering objects. The integration test records the requests of a real run against kmock
and checks them against this list both ways; ``tests/deploy/test_operator_rbac.py``
checks the chart's Role against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from collab_operator import GROUP, PLURAL


@dataclass(frozen=True, slots=True)
class Rule:
    group: str
    resource: str
    verbs: frozenset[str]
    why: str


RULES = (
    Rule(GROUP, PLURAL, frozenset({"list", "watch"}), "kopf: watch GatewayPools"),
    Rule(GROUP, PLURAL, frozenset({"patch"}), "kopf: add and remove its finalizer"),
    Rule(GROUP, f"{PLURAL}/status", frozenset({"patch"}), "kopf: write the status"),
    Rule("", "events", frozenset({"create"}), "kopf.event: scale and trouble Events"),
    Rule("apps", "deployments", frozenset({"get"}), "kube.Kube.deployment"),
    Rule("apps", "deployments/scale", frozenset({"patch"}), "kube.Kube.scale"),
    Rule("", "pods", frozenset({"list"}), "kube.Kube.pods"),
    Rule("", "pods", frozenset({"patch"}), "kube.Kube.set_deletion_cost"),
)


def permissions() -> set[tuple[str, str, str]]:
    """``(group, resource, verb)`` for every verb the operator uses."""
    return {(rule.group, rule.resource, verb) for rule in RULES for verb in rule.verbs}
