"""Prometheus metrics of presence, declared once."""

from prometheus_client import Counter, Gauge

PARTICIPANTS = Gauge(
    "collab_presence_participants", "Sessions in the rosters of this partition's documents."
)
UPDATES = Counter("collab_presence_updates_total", "Presence updates received, by kind.", ["kind"])
EXPIRED = Counter(
    "collab_presence_expired_total", "Sessions removed because their gateway stopped reporting."
)
SHARDS_OWNED = Gauge(
    "collab_presence_shards_owned",
    "Presence ingress shards this process holds the lease of (it waits for the others).",
)
STREAM_PENDING = Gauge(
    "collab_presence_stream_pending_entries",
    "Presence ingress entries delivered and not yet acknowledged.",
    ["stream", "group"],
)
STREAM_LAG = Gauge(
    "collab_presence_stream_lag_entries",
    "Presence ingress entries not yet delivered.",
    ["stream", "group"],
)
STREAM_OLDEST_PENDING = Gauge(
    "collab_presence_stream_oldest_pending_seconds",
    "Age of the oldest presence ingress entry delivered and not yet acknowledged (0 if none).",
    ["stream", "group"],
)
