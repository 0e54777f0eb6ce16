"""The operator's RBAC: exactly the calls it makes (collab_operator.rbac), in its namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploykit import ALL_APIS, SCENARIOS, Renderer, by_kind, need_module, one, values_args


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda v: "defaults" if v is None else v.name)
def test_role_grants_exactly_what_the_operator_uses(
    renderer: Renderer, values: Path | None
) -> None:
    docs = renderer.docs(*ALL_APIS, *values_args(values))
    assert by_kind(docs, "ClusterRole") == []
    assert by_kind(docs, "ClusterRoleBinding") == []
    if not by_kind(docs, "GatewayPool"):
        assert by_kind(docs, "Role") == by_kind(docs, "RoleBinding") == []
        assert by_kind(docs, "ServiceAccount") == []
        return
    rbac = need_module("collab_operator.rbac", "the project (pip install -e .)")
    role = one(docs, "Role", "collab-operator")
    assert granted(role) == rbac.permissions()
    for rule in role["rules"]:
        if rule["apiGroups"] == ["apps"]:
            # Only this release's gateway can be read and scaled.
            assert rule["resourceNames"] == ["collab-gateway"]
    binding = one(docs, "RoleBinding", "collab-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "collab-operator",
    }
    operator = one(docs, "Deployment", "collab-operator")
    account = operator["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "collab"}
    ]
    assert one(docs, "ServiceAccount", account)["automountServiceAccountToken"] is False
