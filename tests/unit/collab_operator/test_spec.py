"""Parsing a GatewayPool spec (collab_operator.spec)."""

from __future__ import annotations

from typing import Any

import pytest

from collab_operator.spec import Behavior, InvalidSpec, parse

MINIMAL = {"deploymentName": "gw", "maxReplicas": 10, "targetConnectionsPerPod": 100}


def test_defaults_are_hpas() -> None:
    spec = parse(MINIMAL)
    assert spec.min_replicas == 1
    assert spec.scale_up == Behavior(0, 4, 0.1)
    assert spec.scale_down == Behavior(300, 1, 0.1)
    assert spec.drain_seconds == 60
    assert spec.stale_after_seconds == 30
    assert spec.target_messages_per_second_per_pod is None


def test_partial_behaviour_keeps_the_other_defaults() -> None:
    spec = parse({**MINIMAL, "scaleDown": {"stabilizationWindowSeconds": 5}})
    assert spec.scale_down == Behavior(5, 1, 0.1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deploymentName": ""}, "deploymentName must be a non-empty string"),
        ({"maxReplicas": None}, "maxReplicas is required"),
        ({"minReplicas": 4, "maxReplicas": 3}, "minReplicas (4) must not exceed maxReplicas (3)"),
        ({"minReplicas": 0}, "minReplicas must be at least 1"),
        ({"targetConnectionsPerPod": True}, "targetConnectionsPerPod must be an integer"),
        ({"scaleUp": {"tolerance": 2}}, "scaleUp.tolerance must be between 0 and 1"),
        ({"scaleDown": {"maxPodsPerStep": 0}}, "scaleDown.maxPodsPerStep must be at least 1"),
        ({"scaleDown": []}, "scaleDown must be an object"),
        ({"load": {"staleAfterSeconds": 0}}, "load.staleAfterSeconds must be at least 1"),
        ({"drainSeconds": "60"}, "drainSeconds must be a number"),
        ({"targetMessagesPerSecondPerPod": 0}, "targetMessagesPerSecondPerPod must be at least 1"),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], message: str) -> None:
    raw = {k: v for k, v in {**MINIMAL, **change}.items() if v is not None}
    with pytest.raises(InvalidSpec) as refused:
        parse(raw)
    assert str(refused.value) == message
