"""Prometheus metrics of edit-transform, declared once."""

from prometheus_client import Counter, Gauge, Histogram

from collab_core.errors import ErrorCode
from collab_core.telemetry import LATENCY_BUCKETS

COMMITTED = Counter("collab_transform_commits_total", "Ops committed to document logs.")
CONFLICTS = Counter(
    "collab_transform_version_conflicts_total",
    "Commits retried because another replica committed the version first.",
)
DUPLICATES = Counter(
    "collab_transform_duplicates_total", "Resent ops recognised as already committed."
)
REFUSED = Counter("collab_transform_refused_total", "Submissions refused, by error code.", ["code"])
# Series that exist at zero let rate() and alerts see the first refusal.
for _code in ErrorCode:
    REFUSED.labels(_code.value)
CLAIMED = Counter(
    "collab_transform_claimed_total", "Ingress entries taken over from an idle consumer."
)
FAILED = Counter(
    "collab_transform_failed_total",
    "Submissions whose processing raised; the entry stays pending and is retried.",
)
UNREPLICATED = Counter(
    "collab_transform_unreplicated_total",
    "Commits made visible without the replicas asked for (WAIT timed out).",
)
DEAD_LETTERED = Counter(
    "collab_transform_dead_lettered_total",
    "Ingress entries set aside in the dead-letter stream after too many deliveries.",
)
COMMIT_SECONDS = Histogram(
    "collab_transform_commit_seconds",
    "Time of the check-and-append script.",
    buckets=LATENCY_BUCKETS,
)
PROCESS_SECONDS = Histogram(
    "collab_transform_process_seconds",
    "Time to process one submission: load, transform, commit.",
    buckets=LATENCY_BUCKETS,
)
SUBMIT_TO_COMMIT_SECONDS = Histogram(
    "collab_transform_submit_to_commit_seconds",
    "From the gateway receiving an op to its commit (clocks of two hosts).",
    buckets=LATENCY_BUCKETS,
)
STREAM_PENDING = Gauge(
    "collab_transform_stream_pending_entries",
    "Ingress entries delivered to a consumer and not yet acknowledged.",
    ["stream", "group"],
)
STREAM_LAG = Gauge(
    "collab_transform_stream_lag_entries",
    "Ingress entries not yet delivered to any consumer.",
    ["stream", "group"],
)
STREAM_OLDEST_PENDING = Gauge(
    "collab_transform_stream_oldest_pending_seconds",
    "Age of the oldest ingress entry delivered and not yet acknowledged (0 if none).",
    ["stream", "group"],
)
