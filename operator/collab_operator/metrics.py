"""Prometheus metrics of the operator, declared once.

Labels name the pool (``<namespace>/<name>``) and nothing finer: never a document, a user
or a pod, so the number of series stays the number of pools.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

DESIRED = Gauge(
    "collab_operator_desired_replicas", "Gateway replicas the operator wants.", ["pool"]
)
CURRENT = Gauge("collab_operator_current_replicas", "Gateway pods the Deployment has.", ["pool"])
LOAD = Gauge(
    "collab_operator_load",
    "Load of the reporting gateways in pods' worth (rooms capped at the per-pod target).",
    ["pool"],
)
SCALE_EVENTS = Counter(
    "collab_operator_scale_events_total",
    "Changes of the replica count, by direction (up or down).",
    ["pool", "direction"],
)
RECONCILE_ERRORS = Counter(
    "collab_operator_reconcile_errors_total",
    "Reconciliations that failed, by reason (redis, kubernetes, spec).",
    ["pool", "reason"],
)
RECONCILE_SECONDS = Histogram(
    "collab_operator_reconcile_seconds",
    "Duration of one reconciliation of one pool (load read, decision, patches).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


DIRECTIONS = ("up", "down")
ERROR_REASONS = ("redis", "kubernetes", "spec")


def track(pool: str) -> None:
    """Create a pool's counter series at 0, so that ``rate()`` sees their first increase."""
    for direction in DIRECTIONS:
        SCALE_EVENTS.labels(pool, direction)
    for reason in ERROR_REASONS:
        RECONCILE_ERRORS.labels(pool, reason)


def forget(pool: str) -> None:
    """Drop the series of a deleted pool."""
    for gauge in (DESIRED, CURRENT, LOAD):
        with contextlib.suppress(KeyError):
            gauge.remove(pool)
    for direction in DIRECTIONS:
        with contextlib.suppress(KeyError):
            SCALE_EVENTS.remove(pool, direction)
    for reason in ERROR_REASONS:
        with contextlib.suppress(KeyError):
            RECONCILE_ERRORS.remove(pool, reason)
