"""Status and conditions (collab_operator.status)."""

from __future__ import annotations

from collab_operator.scaling import Condition, Decision, Load, PoolState, Reason
from collab_operator.status import (
    conditions,
    entered_trouble,
    failed,
    parse_timestamp,
    reconciled,
    timestamp,
)

T0 = 1_800_000_000.0
READY = Condition("Ready", "True", "Reconciled", "ok")


def decision(current: int, desired: int) -> Decision:
    return Decision(
        current=current,
        desired=desired,
        reason=Reason.SCALED_DOWN if desired < current else Reason.STEADY,
        message="m",
        load=Load(pods=2.3456, connections=234, gateways=3),
        conditions=(
            Condition("ScalingActive", "True", "ValidLoad", "load"),
            Condition("ScalingLimited", "False", "DesiredWithinRange", "in range"),
        ),
        marks=(),
        state=PoolState(),
    )


def test_timestamps_round_trip() -> None:
    assert timestamp(T0) == "2027-01-15T08:00:00Z"
    assert parse_timestamp(timestamp(T0)) == T0
    assert parse_timestamp("nonsense") is None
    assert parse_timestamp(None) is None


def test_transition_time_moves_only_when_the_status_flips() -> None:
    old = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
             "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidLoad", "message": "",
             "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Other", "status": "True", "reason": "Theirs", "message": "",
             "lastTransitionTime": "2019-01-01T00:00:00Z"},
        ]
    }  # fmt: skip
    new = [
        Condition("Ready", "True", "Reconciled", "still fine"),
        Condition("ScalingActive", "False", "NoLoadReports", "none"),
    ]
    merged = {c["type"]: c for c in conditions(old, new, now=T0, generation=7)}
    assert merged["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert merged["Ready"]["message"] == "still fine"
    assert merged["ScalingActive"]["lastTransitionTime"] == timestamp(T0)
    assert merged["ScalingActive"]["observedGeneration"] == 7
    assert merged["Other"]["reason"] == "Theirs"


def test_trouble_is_reported_once_per_reason() -> None:
    bad = Condition("ScalingLimited", "True", "LargeRoom", "big")
    assert entered_trouble({}, [READY, bad]) == [bad]
    old = {"conditions": conditions({}, [READY, bad], now=T0, generation=None)}
    assert entered_trouble(old, [READY, bad]) == []
    other = Condition("ScalingLimited", "True", "TooManyReplicas", "max")
    assert entered_trouble(old, [other]) == [other]


def test_a_scale_down_records_its_time() -> None:
    patch = reconciled(decision(4, 3), replicas=4, ready=READY, status={}, generation=2, now=T0)
    assert patch["desiredReplicas"] == 3
    assert patch["currentReplicas"] == 4
    assert patch["observedLoad"] == 2.346
    assert patch["observedGeneration"] == 2
    assert patch["lastScaleTime"] == patch["lastScaleDownTime"] == timestamp(T0)
    assert [c["type"] for c in patch["conditions"]] == ["Ready", "ScalingActive", "ScalingLimited"]


def test_a_steady_tick_leaves_the_scale_times() -> None:
    patch = reconciled(decision(3, 3), replicas=3, ready=READY, status={}, generation=2, now=T0)
    assert "lastScaleTime" not in patch
    assert "lastScaleDownTime" not in patch


def test_a_failed_tick_changes_only_conditions() -> None:
    patch = failed(
        [Condition("Ready", "False", "LoadUnavailable", "redis down")],
        status={"desiredReplicas": 3},
        generation=1,
        now=T0,
    )
    assert set(patch) == {"conditions", "observedGeneration"}
    assert patch["conditions"][0]["reason"] == "LoadUnavailable"
