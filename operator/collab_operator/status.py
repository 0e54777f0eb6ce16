"""The ``status`` of a GatewayPool, built from a decision; pure.

Conditions follow the Kubernetes API conventions (``metav1.Condition``): one entry per
``type``, ``lastTransitionTime`` changes only when ``status`` flips, and
``observedGeneration`` says which spec the condition was computed from. Condition types
of other writers are kept as they are.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from collab_operator.scaling import Condition, Decision

OURS = ("Ready", "ScalingActive", "ScalingLimited")
#: Condition states worth a Warning event when a condition enters them. The step limits
#: and a load below minReplicas are the policy working as configured, not trouble.
TROUBLE = {"Ready": "False", "ScalingActive": "False", "ScalingLimited": "True"}
TROUBLE_LIMITS = {"LargeRoom", "TooManyReplicas"}


def timestamp(now: float) -> str:
    """RFC 3339 in UTC with second precision, as the API server writes times."""
    moment = datetime.datetime.fromtimestamp(int(now), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _old_conditions(status: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    conditions = (status or {}).get("conditions") or []
    return [c for c in conditions if isinstance(c, Mapping) and isinstance(c.get("type"), str)]


def conditions(
    status: Mapping[str, Any] | None,
    new: Iterable[Condition],
    *,
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The full ``conditions`` list: ``new`` merged over the old ones (a merge patch
    replaces lists whole, so the old entries of other types are carried over)."""
    old = {c["type"]: c for c in _old_conditions(status)}
    merged: dict[str, dict[str, Any]] = {t: dict(c) for t, c in old.items()}
    for condition in new:
        before = old.get(condition.type) or {}
        since = before.get("lastTransitionTime")
        if before.get("status") != condition.status or not since:
            since = timestamp(now)
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged[condition.type] = entry
    ordered = [merged.pop(t) for t in OURS if t in merged]
    return ordered + [merged[t] for t in sorted(merged)]


def entered_trouble(status: Mapping[str, Any] | None, new: Iterable[Condition]) -> list[Condition]:
    """Conditions that now report trouble and did not, or did for another reason."""
    old = {c["type"]: c for c in _old_conditions(status)}
    result = []
    for condition in new:
        if TROUBLE.get(condition.type) != condition.status:
            continue
        if condition.type == "ScalingLimited" and condition.reason not in TROUBLE_LIMITS:
            continue
        before = old.get(condition.type, {})
        if (before.get("status"), before.get("reason")) != (condition.status, condition.reason):
            result.append(condition)
    return result


def reconciled(
    decision: Decision,
    *,
    replicas: int,
    ready: Condition,
    status: Mapping[str, Any] | None,
    generation: int | None,
    now: float,
) -> dict[str, Any]:
    """The status after a tick that read the load and applied ``decision``.

    ``replicas`` is the number of pods the Deployment has (its ``status.replicas``).
    """
    patch: dict[str, Any] = {
        "desiredReplicas": decision.desired,
        "currentReplicas": replicas,
        "observedLoad": round(decision.load.pods, 3),
        "observedConnections": decision.load.connections,
        "reportingGateways": decision.load.gateways,
        "conditions": conditions(
            status, (ready, *decision.conditions), now=now, generation=generation
        ),
    }
    if generation is not None:
        patch["observedGeneration"] = generation
    if decision.desired != decision.current:
        patch["lastScaleTime"] = timestamp(now)
    if decision.desired < decision.current:
        patch["lastScaleDownTime"] = timestamp(now)
    return patch


def failed(
    new: Iterable[Condition],
    *,
    status: Mapping[str, Any] | None,
    generation: int | None,
    now: float,
) -> dict[str, Any]:
    """The status after a tick that could not decide: only the conditions change."""
    patch: dict[str, Any] = {"conditions": conditions(status, new, now=now, generation=generation)}
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch
