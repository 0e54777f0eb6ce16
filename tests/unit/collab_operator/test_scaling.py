"""The scaling policy (collab_operator.scaling): named scenarios, then properties.

Pure: every test passes ``now``; nothing sleeps or reads the clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from collab_operator.report import LoadReport, Room
from collab_operator.scaling import (
    Decision,
    Gateway,
    PoolState,
    Reason,
    Recommendation,
    decide,
    measure,
)
from collab_operator.spec import Behavior, PoolSpec

T0 = 1_800_000_000.0
TICK = 5.0


def pool(
    *,
    minimum: int = 1,
    maximum: int = 10,
    target: int = 100,
    messages: float | None = None,
    up: Behavior | None = None,
    down: Behavior | None = None,
    drain: float = 60,
    stale: float = 30,
) -> PoolSpec:
    return PoolSpec(
        deployment_name="gw",
        min_replicas=minimum,
        max_replicas=maximum,
        target_connections_per_pod=target,
        target_messages_per_second_per_pod=messages,
        scale_up=up or Behavior(0, 4, 0.1),
        scale_down=down or Behavior(300, 1, 0.1),
        drain_seconds=drain,
        stale_after_seconds=stale,
    )


def report(
    pod: str,
    connections: int,
    *,
    at: float = T0,
    rooms: Sequence[tuple[str, int]] | None = None,
    mps: float = 0.0,
    draining: bool = False,
) -> LoadReport:
    """A report as the gateway writes it; by default one connection per room (so the
    load is the connections over the target, whatever the target)."""
    if rooms is None:
        listed = [(f"{pod}-doc{i}", 1) for i in range(min(20, connections))]
        count = connections
    else:
        listed, count = list(rooms), len(rooms)
    ordered = sorted(listed, key=lambda room: -room[1])
    return LoadReport(
        gateway=pod,
        connections=connections,
        rooms=count,
        messages_per_second=mps,
        largest_rooms=tuple(Room(doc=d, connections=n) for d, n in ordered[:20]),
        draining=draining,
        ts=at,
    )


def even(total: int, pods: int, *, at: float = T0) -> list[Gateway]:
    """``pods`` gateways sharing ``total`` connections as evenly as they can."""
    share, extra = divmod(total, pods)
    return [
        Gateway(f"gw-{i}", report(f"gw-{i}", share + (1 if i < extra else 0), at=at))
        for i in range(pods)
    ]


def watched(now: float = T0, *recommendations: tuple[float, int]) -> PoolState:
    """A state that has watched the pool for a long time (so scale-down is possible)."""
    return PoolState(
        recommendations=tuple(Recommendation(at, n) for at, n in recommendations),
        since=now - 10_000,
    )


# -- named scenarios -------------------------------------------------------------------


def test_a_rise_scales_up_at_once_to_the_load() -> None:
    d = decide(even(450, 2), 2, PoolState(), pool(), T0)
    assert (d.desired, d.reason) == (5, Reason.SCALED_UP)
    assert d.load.pods == pytest.approx(4.5)
    assert d.marks == ()
    assert "scaled from 2 to 5" in d.message


def test_a_rise_is_bounded_by_max_pods_per_step() -> None:
    d = decide(even(2000, 2), 2, PoolState(), pool(maximum=50), T0)
    assert (d.desired, d.reason) == (6, Reason.SCALED_UP)
    limited = d.conditions[1]
    assert (limited.type, limited.status, limited.reason) == (
        "ScalingLimited",
        "True",
        "ScaleUpLimit",
    )


def test_a_rise_beyond_max_replicas_stops_there_and_says_so() -> None:
    d = decide(even(5000, 8), 8, PoolState(), pool(), T0)
    assert d.desired == 10
    assert d.conditions[1].reason == "TooManyReplicas"
    assert "asks for 50 replicas; maxReplicas is 10" in d.conditions[1].message


def test_load_within_the_tolerance_band_holds() -> None:
    for total in (361, 400, 439):
        d = decide(even(total, 4), 4, watched(), pool(), T0)
        assert (d.desired, d.reason) == (4, Reason.STEADY), total


def test_scale_down_waits_for_the_stabilization_window() -> None:
    state = watched(T0, (T0 - 200, 5))
    d = decide(even(150, 5), 5, state, pool(), T0)
    assert (d.desired, d.reason) == (5, Reason.SCALE_DOWN_STABILIZED)
    later = decide(even(150, 5, at=T0 + 101), 5, d.state, pool(), T0 + 101)
    assert (later.desired, later.reason) == (4, Reason.SCALED_DOWN)


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    state = watched(T0, (T0 - 100, 3), (T0 - 50, 2))
    spec = pool(down=Behavior(300, 5, 0.1))
    d = decide(even(100, 6), 6, state, spec, T0)
    assert (d.desired, d.reason) == (3, Reason.SCALED_DOWN)
    assert len(d.marks) == 3


def test_scale_down_is_one_step_and_marks_the_least_loaded_gateway() -> None:
    gateways = [
        Gateway("gw-a", report("gw-a", 90)),
        Gateway("gw-b", report("gw-b", 12)),
        Gateway("gw-c", report("gw-c", 40)),
        Gateway("gw-d", report("gw-d", 12, mps=3.0)),
    ]
    d = decide(gateways, 4, watched(), pool(), T0)
    assert (d.desired, d.reason) == (3, Reason.SCALED_DOWN)
    assert d.marks == ("gw-b",)
    assert d.drain
    assert d.state.last_scale_down == T0


def test_the_next_scale_down_waits_for_the_drain() -> None:
    first = decide(even(50, 4), 4, watched(), pool(drain=60), T0)
    assert first.desired == 3
    soon = decide(even(50, 3, at=T0 + 30), 3, first.state, pool(drain=60), T0 + 30)
    assert (soon.desired, soon.reason) == (3, Reason.DRAIN_IN_PROGRESS)
    assert "draining takes 60 s" in soon.message
    after = decide(even(50, 3, at=T0 + 61), 3, first.state, pool(drain=60), T0 + 61)
    assert (after.desired, after.reason) == (2, Reason.SCALED_DOWN)


def test_a_missing_report_never_lets_the_count_fall() -> None:
    gateways = [*even(50, 3), Gateway("gw-new", None, last_seen=T0 - 42)]
    d = decide(gateways, 4, watched(), pool(), T0)
    assert (d.desired, d.reason) == (4, Reason.REPORTS_MISSING)
    assert "gw-new (last report 42 s ago)" in d.message
    assert d.unreported == ("gw-new",)


def test_a_stale_report_never_lets_the_count_fall() -> None:
    gateways = [*even(50, 3), Gateway("gw-old", report("gw-old", 0, at=T0 - 31))]
    d = decide(gateways, 4, watched(), pool(stale=30), T0)
    assert (d.desired, d.reason) == (4, Reason.REPORTS_MISSING)


def test_pods_not_created_yet_count_as_missing() -> None:
    d = decide(even(50, 3), 4, watched(), pool(), T0)
    assert (d.desired, d.reason) == (4, Reason.REPORTS_MISSING)
    assert "1 pods not created yet" in d.message


def test_a_missing_report_does_not_stop_a_rise() -> None:
    gateways = [*even(900, 3), Gateway("gw-new", None)]
    d = decide(gateways, 4, watched(), pool(), T0)
    assert (d.desired, d.reason) == (8, Reason.SCALED_UP)


def test_a_draining_gateway_is_left_out_of_the_load_and_blocks_scale_down() -> None:
    gateways = [*even(100, 3), Gateway("gw-x", report("gw-x", 300, draining=True))]
    d = decide(gateways, 4, watched(), pool(), T0)
    assert d.load.connections == 100
    assert d.load.gateways == 3
    assert (d.desired, d.reason) == (4, Reason.DRAIN_IN_PROGRESS)
    assert "gw-x still draining" in d.message


def test_a_terminating_pod_is_draining_even_before_it_says_so() -> None:
    gateways = [*even(100, 3), Gateway("gw-x", report("gw-x", 300), terminating=True)]
    d = decide(gateways, 3, watched(), pool(), T0)
    assert d.load.connections == 100
    assert (d.desired, d.reason) == (3, Reason.DRAIN_IN_PROGRESS)


def test_a_room_larger_than_the_target_counts_as_one_pod() -> None:
    gateways = [
        Gateway("gw-0", report("gw-0", 520, rooms=[("big", 500), ("a", 20)])),
        Gateway("gw-1", report("gw-1", 30, rooms=[("b", 30)])),
    ]
    d = decide(gateways, 2, watched(), pool(), T0)
    assert d.load.pods == pytest.approx(1.5)
    assert d.load.large_rooms == (Room(doc="big", connections=500),)
    assert d.desired == 2
    limited = d.conditions[1]
    assert (limited.status, limited.reason) == ("True", "LargeRoom")
    assert "room big has 500 connections" in limited.message


def test_a_large_room_does_not_flap() -> None:
    """A room of 500 at 100 per pod: more pods cannot split it, so none are added."""
    decisions = simulate(lambda _: [("big", 500)], current=1, ticks=100)
    assert {d.desired for d in decisions} == {1}
    assert all(d.conditions[1].reason == "LargeRoom" for d in decisions)


def test_a_room_on_two_gateways_is_one_room() -> None:
    gateways = [
        Gateway("gw-0", report("gw-0", 80, rooms=[("doc", 80)])),
        Gateway("gw-1", report("gw-1", 80, rooms=[("doc", 80)])),
    ]
    d = decide(gateways, 2, watched(), pool(), T0)
    assert d.load.pods == pytest.approx(1.0)
    assert d.load.large_rooms == (Room(doc="doc", connections=160),)


def test_rooms_beyond_the_twenty_listed_count_in_sum() -> None:
    rooms = [(f"d{i}", 5) for i in range(30)]
    gateway = Gateway("gw-0", report("gw-0", 150, rooms=rooms))
    assert gateway.report is not None
    assert len(gateway.report.largest_rooms) == 20
    assert measure([gateway.report], pool()).effective_connections == 150


def test_unlisted_rooms_count_at_most_one_target_each() -> None:
    rooms = [(f"d{i}", 300) for i in range(22)]
    load = measure([report("gw-0", 6600, rooms=rooms)], pool(target=100))
    assert load.effective_connections == 22 * 100
    assert load.pods == pytest.approx(22)


def test_the_messages_target_decides_when_it_is_the_larger_load() -> None:
    gateways = [Gateway(f"gw-{i}", report(f"gw-{i}", 50, mps=900.0)) for i in range(2)]
    d = decide(gateways, 2, watched(), pool(messages=300), T0)
    assert d.load.pods == pytest.approx(6.0)
    assert d.desired == 6
    assert "1800.0 messages/s" in d.message


def test_no_reports_at_all_pauses_scaling() -> None:
    d = decide([Gateway("gw-0", None), Gateway("gw-1", None)], 2, watched(), pool(), T0)
    assert (d.desired, d.reason) == (2, Reason.NO_LOAD_REPORTS)
    active = d.conditions[0]
    assert (active.type, active.status, active.reason) == (
        "ScalingActive",
        "False",
        "NoLoadReports",
    )
    assert d.state.recommendations == ()


def test_bounds_hold_without_reports() -> None:
    d = decide([], 0, PoolState(), pool(minimum=2), T0)
    assert (d.desired, d.reason) == (2, Reason.BELOW_MINIMUM)
    d = decide([Gateway("gw-0", None)] * 12, 12, PoolState(), pool(maximum=10), T0)
    assert (d.desired, d.reason) == (10, Reason.ABOVE_MAXIMUM)


def test_above_max_replicas_drops_to_it_and_marks_the_least_loaded() -> None:
    gateways = [Gateway(f"gw-{i}", report(f"gw-{i}", 10 * i)) for i in range(5)]
    d = decide(gateways, 5, PoolState(), pool(maximum=3), T0)
    assert (d.desired, d.reason) == (3, Reason.ABOVE_MAXIMUM)
    assert d.marks == ("gw-0", "gw-1")


def test_load_below_min_replicas_stays_at_min() -> None:
    d = decide(even(10, 3), 3, watched(), pool(minimum=3), T0)
    assert (d.desired, d.reason) == (3, Reason.STEADY)
    assert d.conditions[1].reason == "TooFewReplicas"


def test_after_a_restart_nothing_is_removed_for_a_whole_window() -> None:
    """HPA seeds its history with the current count; an empty memory is no licence."""
    state = PoolState()
    for t in range(0, 300, 5):
        d = decide(even(50, 6, at=T0 + t), 6, state, pool(), T0 + t)
        assert (d.desired, d.reason) == (6, Reason.SCALE_DOWN_STABILIZED)
        state = d.state
    d = decide(even(50, 6, at=T0 + 300), 6, state, pool(), T0 + 300)
    assert (d.desired, d.reason) == (5, Reason.SCALED_DOWN)


def test_a_scale_up_window_needs_the_rise_to_last() -> None:
    spec = pool(up=Behavior(30, 4, 0.1))
    first = decide(even(400, 2), 2, watched(), spec, T0)
    assert (first.desired, first.reason) == (4, Reason.SCALED_UP)  # nothing lower in the window
    dip = decide(even(150, 4, at=T0 + 5), 4, first.state, spec, T0 + 5)
    rise = decide(even(800, 4, at=T0 + 10), 4, dip.state, spec, T0 + 10)
    assert (rise.desired, rise.reason) == (4, Reason.SCALE_UP_STABILIZED)


def test_history_keeps_only_the_longest_window() -> None:
    state = watched(T0, (T0 - 400, 9), (T0 - 100, 4))
    d = decide(even(300, 3), 3, state, pool(), T0)
    assert [r.at for r in d.state.recommendations] == [T0 - 100, T0]


# -- properties ------------------------------------------------------------------------


def simulate(
    rooms_at: Callable[[int], list[tuple[str, int]]],
    *,
    current: int,
    ticks: int,
    spec: PoolSpec | None = None,
    state: PoolState | None = None,
    dt: float = TICK,
) -> list[Decision]:
    """Run the policy for ``ticks`` ticks; the rooms of tick ``i`` are spread round-robin
    over the pods, a scaled-down pod is gone by the next tick."""
    spec = spec or pool()
    state = state or PoolState()
    decisions = []
    for i in range(ticks):
        now = T0 + i * dt
        per_pod: list[list[tuple[str, int]]] = [[] for _ in range(max(current, 0))]
        for n, room in enumerate(rooms_at(i)):
            if per_pod:
                per_pod[n % len(per_pod)].append(room)
        gateways = [
            Gateway(f"gw-{p}", report(f"gw-{p}", sum(c for _, c in rs), rooms=rs, at=now))
            for p, rs in enumerate(per_pod)
        ]
        d = decide(gateways, current, state, spec, now)
        decisions.append(d)
        current, state = d.desired, d.state
    return decisions


behaviors = st.builds(
    Behavior,
    stabilization_window_seconds=st.sampled_from([0, 5, 15, 60, 300]),
    max_pods_per_step=st.integers(1, 6),
    tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
)


@st.composite
def specs(draw: st.DrawFn) -> PoolSpec:
    minimum = draw(st.integers(1, 5))
    return pool(
        minimum=minimum,
        maximum=draw(st.integers(minimum, 30)),
        target=draw(st.sampled_from([1, 7, 50, 100, 1000])),
        messages=draw(st.none() | st.sampled_from([10.0, 250.0])),
        up=draw(behaviors),
        down=draw(behaviors),
        drain=draw(st.sampled_from([0, 10, 60])),
        stale=draw(st.sampled_from([10, 30])),
    )


@st.composite
def gateway_sets(draw: st.DrawFn) -> list[Gateway]:
    count = draw(st.integers(0, 8))
    result = []
    for i in range(count):
        pod = f"gw-{i}"
        kind = draw(st.sampled_from(["fresh", "fresh", "stale", "none", "draining", "terminating"]))
        rooms = draw(st.lists(st.integers(0, 2000), max_size=6))
        at = T0 - (draw(st.floats(31, 500)) if kind == "stale" else draw(st.floats(0, 9)))
        r = report(
            pod,
            sum(rooms),
            rooms=[
                (f"doc-{k}", n)
                for k, n in zip(draw(st.permutations(range(12))), rooms, strict=False)
            ],
            at=at,
            mps=draw(st.floats(0, 5000)),
            draining=kind == "draining",
        )
        result.append(Gateway(pod, None if kind == "none" else r, kind == "terminating"))
    return result


@st.composite
def states(draw: st.DrawFn) -> PoolState:
    recs = draw(st.lists(st.tuples(st.floats(0, 400), st.integers(1, 30)), max_size=10))
    return PoolState(
        recommendations=tuple(
            sorted((Recommendation(T0 - a, n) for a, n in recs), key=lambda r: r.at)
        ),
        since=draw(st.none() | st.floats(0, 1000).map(lambda a: T0 - a)),
        last_scale_down=draw(st.none() | st.floats(0, 100).map(lambda a: T0 - a)),
    )


@settings(max_examples=500, deadline=None)
@given(gateway_sets(), st.integers(0, 40), states(), specs())
def test_never_outside_min_and_max(
    gateways: list[Gateway], current: int, state: PoolState, spec: PoolSpec
) -> None:
    d = decide(gateways, current, state, spec, T0)
    assert spec.min_replicas <= d.desired <= spec.max_replicas
    assert len(d.marks) <= max(0, current - d.desired)
    assert set(d.marks) <= {g.pod for g in gateways}


@settings(max_examples=500, deadline=None)
@given(gateway_sets(), st.integers(1, 40), states(), specs())
def test_never_scales_down_within_the_stabilization_window(
    gateways: list[Gateway], current: int, state: PoolState, spec: PoolSpec
) -> None:
    d = decide(gateways, current, state, spec, T0)
    assume(current <= spec.max_replicas)  # above max, the bound wins at once
    if d.desired >= current:
        return
    window = spec.scale_down.stabilization_window_seconds
    recent = [r.replicas for r in d.state.recommendations if T0 - r.at < window]
    assert all(n <= d.desired for n in recent)
    since = state.since if state.since is not None else T0
    assert T0 - since >= window
    assert current - d.desired <= spec.scale_down.max_pods_per_step


@settings(max_examples=300, deadline=None)
@given(specs(), st.lists(st.integers(0, 3000), min_size=1, max_size=12), st.integers(1, 30))
def test_a_scale_down_never_undercuts_a_recommendation_in_the_window(
    spec: PoolSpec, curve: list[int], start: int
) -> None:
    """Over a load curve (each level held for 30 s), no scale-down goes below what any
    tick of the last window asked for, nor starts before a full window was watched."""
    levels = [total for total in curve for _ in range(6)]
    decisions = simulate(
        lambda i: [(f"d{k}", 1) for k in range(levels[i])],
        current=start,
        ticks=len(levels),
        spec=spec,
    )
    window = spec.scale_down.stabilization_window_seconds
    asked = [(T0 + i * TICK, d.state.recommendations[-1].replicas) for i, d in enumerate(decisions)]
    for i, d in enumerate(decisions):
        now = T0 + i * TICK
        if d.desired >= d.current or d.current > spec.max_replicas:
            continue
        assert now - T0 >= window
        assert all(n <= d.desired for at, n in asked[: i + 1] if now - at < window)
        assert d.current - d.desired <= spec.scale_down.max_pods_per_step


@settings(max_examples=500, deadline=None)
@given(gateway_sets(), st.integers(1, 40), states(), specs())
def test_stale_and_missing_reports_never_cause_a_scale_down(
    gateways: list[Gateway], current: int, state: PoolState, spec: PoolSpec
) -> None:
    assume(current <= spec.max_replicas)
    d = decide(gateways, current, state, spec, T0)
    if d.unreported:
        assert d.desired >= current


@settings(max_examples=500, deadline=None)
@given(gateway_sets(), st.integers(0, 40), states(), specs(), st.floats(31, 1000))
def test_a_stale_report_counts_as_no_report(
    gateways: list[Gateway], current: int, state: PoolState, spec: PoolSpec, age: float
) -> None:
    """Whatever a stale report says, the decision is the one without it."""
    assume(gateways)
    first = gateways[0]
    base = first.report or report(first.pod, 0)
    old = msgspec.structs.replace(base, ts=T0 - spec.stale_after_seconds - age)
    stale = dataclasses.replace(first, report=old)
    missing = dataclasses.replace(first, report=None)
    with_stale = decide([stale, *gateways[1:]], current, state, spec, T0)
    without = decide([missing, *gateways[1:]], current, state, spec, T0)
    assert (with_stale.desired, with_stale.reason, with_stale.marks) == (
        without.desired,
        without.reason,
        without.marks,
    )


@settings(max_examples=200, deadline=None)
@given(specs(), st.integers(0, 20_000), st.integers(1, 30), st.integers(1, 10))
def test_never_flaps_on_a_steady_load(
    spec: PoolSpec, connections: int, start: int, size: int
) -> None:
    """Under a constant load the count moves one way, then stays."""
    rooms = [(f"doc-{i}", size) for i in range(connections // size)]
    decisions = simulate(lambda _: rooms, current=start, ticks=120, spec=spec, dt=7.0)
    moves = [d.desired - d.current for d in decisions if d.desired != d.current]
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves), moves


@st.composite
def doubling_cases(draw: st.DrawFn) -> tuple[PoolSpec, int]:
    """A pool with an immediate scale-up and a count inside its bounds."""
    minimum = draw(st.integers(1, 5))
    spec = pool(
        minimum=minimum,
        maximum=draw(st.integers(minimum, 40)),
        target=draw(st.sampled_from([1, 7, 50, 100, 1000])),
        up=Behavior(0, draw(st.integers(1, 6)), draw(st.sampled_from([0.0, 0.05, 0.1, 0.3]))),
        down=draw(behaviors),
    )
    return spec, draw(st.integers(spec.min_replicas, spec.max_replicas))


@settings(max_examples=500, deadline=None)
@given(doubling_cases(), st.sampled_from([0.95, 1.0, 1.05]))
def test_reacts_to_a_doubling_in_one_step(case: tuple[PoolSpec, int], fill: float) -> None:
    """Steady at the target, then twice the load: the very next tick adds what the load
    asks for, up to maxPodsPerStep."""
    spec, pods = case
    target = spec.target_connections_per_pod
    steady = round(pods * target * fill)
    state = watched(T0, (T0 - 1, pods))
    before = decide(even(steady, pods), pods, state, spec, T0)
    assume(before.desired == pods)
    after = decide(even(2 * steady, pods, at=T0 + TICK), pods, before.state, spec, T0 + TICK)
    wanted = min(spec.max_replicas, max(spec.min_replicas, math.ceil(2 * steady / target - 1e-9)))
    expected = min(wanted, pods + spec.scale_up.max_pods_per_step)
    assert after.desired == expected
    if expected > pods:
        assert after.reason == Reason.SCALED_UP
