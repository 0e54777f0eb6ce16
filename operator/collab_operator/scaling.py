"""The scaling policy: from the gateways' load reports to a number of replicas.

Pure: it takes data and ``now`` and returns a :class:`Decision`; it never awaits, reads the
clock or talks to Redis or Kubernetes. The operator calls :func:`decide` once per tick and
passes the returned ``state`` back in on the next one.

It follows the HPA algorithm (Kubernetes docs, "Horizontal Pod Autoscaling": algorithm
details, and "configurable scaling behavior"), changed where WebSocket rooms need it:

1. **Load.** A room is pinned to one gateway (routing hashes the document id), so it can
   never be split over pods. The load is the connections of each room, capped at the
   per-pod target, summed and divided by the target: the number of pods' worth of rooms.
   A room above the target counts as one pod, because more pods cannot relieve it; it
   sets ``ScalingLimited`` (reason ``LargeRoom``) rather than asking for pods that would
   sit idle or, with a per-pod metric, grow without end. With a messages-per-second target
   the load is the larger of the two (HPA: the largest of several metrics).
2. **Recommendation.** ``ceil(load)`` when ``load / current`` is outside the tolerance band
   (``1 ± tolerance``), else ``current``; then clamped to ``[minReplicas, maxReplicas]``.
3. **Scale up** to the lowest recommendation of the scale-up window (0 s by default: at
   once), by at most ``scaleUp.maxPodsPerStep`` per tick.
4. **Scale down** to the highest recommendation of the scale-down window (HPA's
   stabilization), by at most ``scaleDown.maxPodsPerStep``, and only when every pod has a
   fresh report, no gateway is draining and ``drainSeconds`` have passed since the last
   scale-down. Until a whole window has been observed (after a restart of the operator),
   nothing is removed: HPA seeds its history with the current count for the same reason.
5. **Which pod goes.** The least-loaded reporting gateways are named in ``marks``; the
   operator gives them the lowest ``controller.kubernetes.io/pod-deletion-cost`` before
   lowering ``replicas``, so the ReplicaSet removes them and they drain.

Missing or stale reports (older than ``load.staleAfterSeconds``) never lower the count,
since their load is unknown; they still let a rise through, which is measured on the
gateways that did report. Draining gateways (a report that says so, or a terminating
pod) are left out of the load: their clients are reconnecting to the others, whose next
reports count them, so counting both would ask for pods that the drain just gave back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

from collab_operator.report import LoadReport, Room
from collab_operator.spec import PoolSpec

#: Float noise below this does not ask for another pod (3.0000000001 pods is 3).
EPSILON = 1e-9


class Reason(StrEnum):
    """Why the count is what it is; stable names, used in Events and status messages."""

    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    BELOW_MINIMUM = "BelowMinimum"
    ABOVE_MAXIMUM = "AboveMaximum"
    STEADY = "Steady"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    REPORTS_MISSING = "ReportsMissing"
    DRAIN_IN_PROGRESS = "DrainInProgress"
    NO_LOAD_REPORTS = "NoLoadReports"


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Condition:
    """A status condition in the standard shape, minus the times the caller adds."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Gateway:
    """One pod of the Deployment and its latest report (``None``: it has none)."""

    pod: str
    report: LoadReport | None
    terminating: bool = False
    #: When it last reported (from ``GATEWAYS``), even if that report is gone; for messages.
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class PoolState:
    """What the policy remembers between ticks; kept by the caller, passed back in."""

    recommendations: tuple[Recommendation, ...] = ()
    #: When the policy first saw the pool; no scale-down until a full window later.
    since: float | None = None
    #: When the count was last lowered; the next scale-down waits ``drainSeconds``.
    last_scale_down: float | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """The load of the reporting gateways."""

    #: Pods' worth of load: what ``ceil`` turns into a recommendation.
    pods: float = 0.0
    connections: int = 0
    #: Connections with every room capped at the per-pod target.
    effective_connections: float = 0.0
    messages_per_second: float = 0.0
    gateways: int = 0
    #: Rooms above the per-pod target, largest first.
    large_rooms: tuple[Room, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    #: One sentence for people: what was decided and why.
    message: str
    load: Load
    #: ``ScalingActive`` and ``ScalingLimited``.
    conditions: tuple[Condition, ...]
    #: Pods to mark for deletion before lowering the count, least loaded first.
    marks: tuple[str, ...]
    state: PoolState
    #: Pods with no fresh report (they block a scale-down).
    unreported: tuple[str, ...] = ()

    @property
    def drain(self) -> bool:
        """Whether this decision removes pods (which then drain their rooms)."""
        return self.desired < self.current


def measure(reports: Iterable[LoadReport], spec: PoolSpec) -> Load:
    """The load of ``reports``: rooms weighted by their connections, each capped at the target.

    A report lists its 20 largest rooms; the rest are known only in sum. Unlisted rooms are
    no larger than the smallest listed one, so their capped sum is at most their
    connections, and at most one target per room.
    """
    target = spec.target_connections_per_pod
    rooms: dict[str, int] = {}
    unlisted = 0.0
    connections = 0
    messages = 0.0
    count = 0
    for report in reports:
        count += 1
        connections += report.connections
        messages += report.messages_per_second
        for room in report.largest_rooms:
            # During a move a room can briefly have connections on two gateways; it is
            # still one room.
            rooms[room.doc] = rooms.get(room.doc, 0) + room.connections
        rest = max(0, report.connections - sum(r.connections for r in report.largest_rooms))
        rest_rooms = report.rooms - len(report.largest_rooms)
        unlisted += min(rest, rest_rooms * target) if rest_rooms > 0 else rest
    effective = sum(min(n, target) for n in rooms.values()) + unlisted
    pods = effective / target
    if spec.target_messages_per_second_per_pod is not None:
        pods = max(pods, messages / spec.target_messages_per_second_per_pod)
    large = sorted(
        (Room(doc=doc, connections=n) for doc, n in rooms.items() if n > target),
        key=lambda room: (-room.connections, room.doc),
    )
    return Load(
        pods=pods,
        connections=connections,
        effective_connections=effective,
        messages_per_second=messages,
        gateways=count,
        large_rooms=tuple(large),
    )


def recommend(load: Load, current: int, spec: PoolSpec) -> int:
    """The raw recommendation (not clamped): ``ceil(load)`` outside the tolerance band."""
    needed = max(0, math.ceil(load.pods - EPSILON))
    if current <= 0:
        return needed
    ratio = load.pods / current
    if ratio > 1 + spec.scale_up.tolerance or ratio < 1 - spec.scale_down.tolerance:
        return needed
    return current


def _clamp(replicas: int, spec: PoolSpec) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, replicas))


def _fresh(gateway: Gateway, spec: PoolSpec, now: float) -> LoadReport | None:
    report = gateway.report
    if report is None or now - report.ts > spec.stale_after_seconds:
        return None
    return report


def _least_loaded(reporting: Sequence[tuple[Gateway, LoadReport]], count: int) -> tuple[str, ...]:
    ranked = sorted(
        reporting, key=lambda pair: (pair[1].connections, pair[1].messages_per_second, pair[0].pod)
    )
    return tuple(gateway.pod for gateway, _ in ranked[: max(0, count)])


def _limits(
    raw: int, desired: int, wanted: int, load: Load, current: int, spec: PoolSpec
) -> Condition:
    """``ScalingLimited``: every reason the count is not simply what the load asks for."""
    facts: list[tuple[str, str]] = []
    if raw > spec.max_replicas:
        facts.append(
            (
                "TooManyReplicas",
                f"the load asks for {raw} replicas; maxReplicas is {spec.max_replicas}",
            )
        )
    for room in load.large_rooms[:3]:
        facts.append(
            (
                "LargeRoom",
                f"room {room.doc} has {room.connections} connections, more than the target of "
                f"{spec.target_connections_per_pod} per pod; a room stays on one gateway, so "
                "more replicas cannot relieve it",
            )
        )
    if desired > current and desired < wanted:
        facts.append(
            ("ScaleUpLimit", f"at most {spec.scale_up.max_pods_per_step} pods are added per step")
        )
    if current > desired > wanted:
        facts.append(
            (
                "ScaleDownLimit",
                f"at most {spec.scale_down.max_pods_per_step} pods are removed per step",
            )
        )
    if raw < spec.min_replicas:
        facts.append(
            (
                "TooFewReplicas",
                f"the load asks for {raw} replicas; minReplicas is {spec.min_replicas}",
            )
        )
    if not facts:
        return Condition("ScalingLimited", "False", "DesiredWithinRange", "the count is in range")
    return Condition("ScalingLimited", "True", facts[0][0], "; ".join(text for _, text in facts))


def _describe(load: Load, spec: PoolSpec) -> str:
    text = (
        f"load {load.pods:.2f} pods from {load.gateways} gateways "
        f"({load.connections} connections, target {spec.target_connections_per_pod} per pod"
    )
    if spec.target_messages_per_second_per_pod is not None:
        text += (
            f"; {load.messages_per_second:.1f} messages/s, "
            f"target {spec.target_messages_per_second_per_pod:g} per pod"
        )
    return text + ")"


@dataclass(frozen=True, slots=True)
class _Census:
    """The pods sorted by what their reports say."""

    reporting: list[tuple[Gateway, LoadReport]]
    draining: list[str]
    #: Live pods without a fresh report.
    unreported: list[Gateway]
    #: Replicas the Deployment asks for that have no pod yet.
    absent: int

    @classmethod
    def of(cls, gateways: Sequence[Gateway], current: int, spec: PoolSpec, now: float) -> _Census:
        live = [g for g in gateways if not g.terminating]
        fresh = [(g, r) for g in gateways if (r := _fresh(g, spec, now)) is not None]
        draining = {g.pod for g, r in fresh if r.draining} | {
            g.pod for g in gateways if g.terminating
        }
        fresh_pods = {g.pod for g, _ in fresh}
        return cls(
            reporting=[(g, r) for g, r in fresh if g.pod not in draining],
            draining=sorted(draining),
            unreported=[g for g in live if g.pod not in fresh_pods],
            absent=max(0, current - len(live)),
        )

    def missing(self, now: float) -> str:
        """Who has not reported, for a message."""
        named = [
            f"{g.pod} (last report {now - g.last_seen:.0f} s ago)"
            if g.last_seen is not None
            else f"{g.pod} (no report yet)"
            for g in self.unreported
        ]
        if self.absent:
            named.append(f"{self.absent} pods not created yet")
        return ", ".join(named)


class _Step(NamedTuple):
    desired: int
    reason: Reason
    message: str
    #: What the load asks for after stabilization, before the step bound.
    wanted: int


def _scale_up(
    current: int, recommendation: int, state: PoolState, spec: PoolSpec, now: float, why: str
) -> _Step:
    window = spec.scale_up.stabilization_window_seconds
    earlier = [r.replicas for r in state.recommendations if now - r.at < window]
    wanted = min([*earlier, recommendation])
    if wanted <= current:
        message = f"holding at {current}: the load has asked for more for less than {window:g} s"
        return _Step(current, Reason.SCALE_UP_STABILIZED, f"{message}; {why}", wanted)
    desired = min(wanted, current + spec.scale_up.max_pods_per_step)
    return _Step(desired, Reason.SCALED_UP, f"scaled from {current} to {desired}: {why}", wanted)


def _scale_down(
    current: int,
    recommendation: int,
    census: _Census,
    state: PoolState,
    spec: PoolSpec,
    now: float,
    why: str,
) -> _Step:
    window = spec.scale_down.stabilization_window_seconds
    earlier = [r.replicas for r in state.recommendations if now - r.at < window]
    wanted = max([*earlier, recommendation])
    since = state.since if state.since is not None else now
    waited = now - state.last_scale_down if state.last_scale_down is not None else None

    def hold(reason: Reason, text: str) -> _Step:
        return _Step(current, reason, f"holding at {current}: {text}; {why}", wanted)

    if wanted >= current:
        return hold(
            Reason.SCALE_DOWN_STABILIZED,
            f"the load asked for {wanted} within the last {window:g} s",
        )
    if now - since < window:
        return hold(
            Reason.SCALE_DOWN_STABILIZED,
            f"the load has been watched for {now - since:.0f} s of the {window:g} s window",
        )
    if census.unreported or census.absent:
        return hold(Reason.REPORTS_MISSING, f"no fresh load report from {census.missing(now)}")
    if census.draining:
        return hold(Reason.DRAIN_IN_PROGRESS, f"{', '.join(census.draining)} still draining")
    if waited is not None and waited < spec.drain_seconds:
        return hold(
            Reason.DRAIN_IN_PROGRESS,
            f"the last scale-down was {waited:.0f} s ago and draining takes "
            f"{spec.drain_seconds:g} s",
        )
    desired = max(wanted, current - spec.scale_down.max_pods_per_step)
    return _Step(desired, Reason.SCALED_DOWN, f"scaled from {current} to {desired}: {why}", wanted)


def decide(
    gateways: Sequence[Gateway],
    current: int,
    state: PoolState,
    spec: PoolSpec,
    now: float,
) -> Decision:
    """What to do this tick. ``current`` is the Deployment's ``spec.replicas``."""
    census = _Census.of(gateways, current, spec, now)
    load = measure((r for _, r in census.reporting), spec)
    bounded = _clamp(current, spec)
    since = state.since if state.since is not None else now
    bounds = f"to stay in [{spec.min_replicas}, {spec.max_replicas}]"

    if not census.reporting:
        # No load to measure: scaling pauses (HPA: ScalingActive False), bounds still hold.
        message = f"no fresh load report from {len(gateways)} pods"
        active = Condition("ScalingActive", "False", "NoLoadReports", message)
        limited = Condition("ScalingLimited", "False", "DesiredWithinRange", "no load to measure")
        if bounded != current:
            reason = Reason.BELOW_MINIMUM if current < bounded else Reason.ABOVE_MAXIMUM
            step = _Step(bounded, reason, f"scaled from {current} to {bounded} {bounds}", bounded)
        else:
            step = _Step(
                current, Reason.NO_LOAD_REPORTS, f"holding at {current}: {message}", current
            )
        history = state.recommendations
        conditions = (active, limited)
    else:
        why = _describe(load, spec)
        raw = recommend(load, current, spec)
        recommendation = _clamp(raw, spec)
        if bounded != current:
            reason = Reason.BELOW_MINIMUM if current < bounded else Reason.ABOVE_MAXIMUM
            message = f"scaled from {current} to {bounded} {bounds}; {why}"
            step = _Step(bounded, reason, message, recommendation)
        elif recommendation > current:
            step = _scale_up(current, recommendation, state, spec, now, why)
        elif recommendation < current:
            step = _scale_down(current, recommendation, census, state, spec, now, why)
        else:
            step = _Step(current, Reason.STEADY, f"holding at {current}: {why}", current)
        horizon = max(
            spec.scale_up.stabilization_window_seconds,
            spec.scale_down.stabilization_window_seconds,
        )
        kept = (r for r in state.recommendations if now - r.at < horizon)
        history = (*kept, Recommendation(now, recommendation))
        active = Condition("ScalingActive", "True", "ValidLoad", why)
        conditions = (active, _limits(raw, step.desired, step.wanted, load, current, spec))

    removed = current - step.desired
    return Decision(
        current=current,
        desired=step.desired,
        reason=step.reason,
        message=step.message,
        load=load,
        conditions=conditions,
        marks=_least_loaded(census.reporting, removed) if removed > 0 else (),
        state=PoolState(
            recommendations=history,
            since=since,
            last_scale_down=now if removed > 0 else state.last_scale_down,
        ),
        unreported=tuple(g.pod for g in census.unreported),
    )
