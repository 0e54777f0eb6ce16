"""The spec of a ``GatewayPool``, parsed and checked.

The CRD's schema (``crds/gatewaypool.yaml``) validates and defaults the spec at admission;
this module applies the same defaults and rules again, because the operator must not trust
a spec that an older CRD, a server without CEL, or a test harness let through. The unit
tests check that the defaults here equal the schema's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: HPA's defaults (k8s API reference, HPAScalingRules): react to a rise at once, wait
#: five minutes of lower load before removing a pod. Tolerance is HPA's 10 %.
SCALE_UP_DEFAULTS = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, "tolerance": 0.1}
SCALE_DOWN_DEFAULTS = {"stabilizationWindowSeconds": 300, "maxPodsPerStep": 1, "tolerance": 0.1}
MIN_REPLICAS_DEFAULT = 1
DRAIN_SECONDS_DEFAULT = 60
STALE_AFTER_SECONDS_DEFAULT = 30


class InvalidSpec(ValueError):
    """The spec cannot be acted on; the message names the field."""


@dataclass(frozen=True, slots=True)
class Behavior:
    """How fast one direction moves (HPA's ``behavior.scaleUp`` / ``scaleDown``)."""

    stabilization_window_seconds: float
    max_pods_per_step: int
    tolerance: float


@dataclass(frozen=True, slots=True)
class PoolSpec:
    deployment_name: str
    min_replicas: int
    max_replicas: int
    target_connections_per_pod: int
    target_messages_per_second_per_pod: float | None
    scale_up: Behavior
    scale_down: Behavior
    drain_seconds: float
    stale_after_seconds: float


def _int(raw: Mapping[str, Any], field: str, path: str, *, low: int, default: int | None) -> int:
    value = raw.get(field, default)
    if value is None:
        raise InvalidSpec(f"{path}{field} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{path}{field} must be an integer")
    if value < low:
        raise InvalidSpec(f"{path}{field} must be at least {low}")
    return value


def _number(
    raw: Mapping[str, Any],
    field: str,
    path: str,
    *,
    low: float,
    high: float | None = None,
    default: float | None = None,
) -> float:
    value = raw.get(field, default)
    if value is None:
        raise InvalidSpec(f"{path}{field} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpec(f"{path}{field} must be a number")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidSpec(f"{path}{field} must be {bound}")
    return float(value)


def _behavior(raw: Any, path: str, defaults: Mapping[str, Any]) -> Behavior:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidSpec(f"{path} must be an object")
    merged = {**defaults, **raw}
    prefix = f"{path}."
    return Behavior(
        stabilization_window_seconds=_number(merged, "stabilizationWindowSeconds", prefix, low=0),
        max_pods_per_step=_int(merged, "maxPodsPerStep", prefix, low=1, default=None),
        tolerance=_number(merged, "tolerance", prefix, low=0, high=1),
    )


def parse(raw: Mapping[str, Any]) -> PoolSpec:
    """The spec of a GatewayPool from its ``spec`` object; :class:`InvalidSpec` if unusable."""
    name = raw.get("deploymentName")
    if not isinstance(name, str) or not name:
        raise InvalidSpec("deploymentName must be a non-empty string")
    minimum = _int(raw, "minReplicas", "", low=1, default=MIN_REPLICAS_DEFAULT)
    maximum = _int(raw, "maxReplicas", "", low=1, default=None)
    if minimum > maximum:
        raise InvalidSpec(f"minReplicas ({minimum}) must not exceed maxReplicas ({maximum})")
    target_messages = None
    if raw.get("targetMessagesPerSecondPerPod") is not None:
        target_messages = _number(raw, "targetMessagesPerSecondPerPod", "", low=1)
    load = raw.get("load") or {}
    if not isinstance(load, Mapping):
        raise InvalidSpec("load must be an object")
    return PoolSpec(
        deployment_name=name,
        min_replicas=minimum,
        max_replicas=maximum,
        target_connections_per_pod=_int(raw, "targetConnectionsPerPod", "", low=1, default=None),
        target_messages_per_second_per_pod=target_messages,
        scale_up=_behavior(raw.get("scaleUp"), "scaleUp", SCALE_UP_DEFAULTS),
        scale_down=_behavior(raw.get("scaleDown"), "scaleDown", SCALE_DOWN_DEFAULTS),
        drain_seconds=_number(raw, "drainSeconds", "", low=0, default=DRAIN_SECONDS_DEFAULT),
        stale_after_seconds=_number(
            load, "staleAfterSeconds", "load.", low=1, default=STALE_AFTER_SECONDS_DEFAULT
        ),
    )
