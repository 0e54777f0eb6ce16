"""Prometheus metrics of presence, declared once."""

from prometheus_client import Counter, Gauge

PARTICIPANTS = Gauge("collab_presence_participants", "Sessions in all rosters.")
UPDATES = Counter("collab_presence_updates_total", "Presence updates received, by kind.", ["kind"])
EXPIRED = Counter(
    "collab_presence_expired_total", "Sessions removed because their gateway stopped reporting."
)
