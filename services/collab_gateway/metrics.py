"""Prometheus metrics of the gateway, declared once. No document or user labels."""

from prometheus_client import Counter, Gauge, Histogram

from collab_core.errors import ErrorCode
from collab_core.telemetry import LATENCY_BUCKETS

CONNECTIONS = Gauge("collab_gateway_connections", "Open WebSocket connections.")
USERS = Gauge("collab_gateway_users", "Distinct users with a connection here.")
ROOMS = Gauge("collab_gateway_rooms", "Documents with at least one connection here.")
CONNECTS = Counter("collab_gateway_connects_total", "WebSocket connections accepted.")
RESUMES = Counter("collab_gateway_resumes_total", "Connections that resumed with since.")
DISCONNECTS = Counter(
    "collab_gateway_disconnects_total", "Connections closed, by reason.", ["reason"]
)
MESSAGES_IN = Counter(
    "collab_gateway_messages_in_total", "Client messages accepted, by type.", ["type"]
)
MESSAGES_OUT = Counter("collab_gateway_messages_out_total", "Frames queued, by type.", ["type"])
ERRORS = Counter("collab_gateway_errors_total", "Errors sent to clients, by code.", ["code"])
SLOW_CONSUMERS = Counter(
    "collab_gateway_slow_consumers_total", "Connections cut off because their send queue was full."
)
SEND_QUEUE = Histogram(
    "collab_gateway_send_queue_depth",
    "Frames waiting in a connection's send queue, sampled when one is written.",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
RECEIVE_TO_FORWARD_SECONDS = Histogram(
    "collab_gateway_receive_to_forward_seconds",
    "From receiving an op frame to its ingress entry being written.",
    buckets=LATENCY_BUCKETS,
)
COMMIT_TO_SEND_SECONDS = Histogram(
    "collab_gateway_commit_to_send_seconds",
    "From an op's commit to its fan-out here (clocks of two hosts).",
    buckets=LATENCY_BUCKETS,
)

#: Disconnect reasons that dashboards name (docs/observability.md lists them all).
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
SLOW_CONSUMER = "slow_consumer"

# Children bound once: fan-out counts per delivery, and a series that exists at zero
# lets rate() and alerts see the first increase.
OPS_OUT = MESSAGES_OUT.labels("op")
ACKS_OUT = MESSAGES_OUT.labels("ack")
PRESENCE_OUT = MESSAGES_OUT.labels("presence")
_ERRORS_OUT = MESSAGES_OUT.labels("error")
for _type in ("hello", "op", "presence", "heartbeat"):
    MESSAGES_IN.labels(_type)
for _type in ("welcome", "heartbeat", "reconnect"):
    MESSAGES_OUT.labels(_type)
for _reason in (
    "client_closed",
    "connection_lost",
    "server_closed",
    HEARTBEAT_TIMEOUT,
    SLOW_CONSUMER,
):
    DISCONNECTS.labels(_reason)
_ERRORS = {code: ERRORS.labels(code.value) for code in ErrorCode}


def error_sent(code: ErrorCode) -> None:
    """Count an ``error`` frame queued for a client."""
    _ERRORS[code].inc()
    _ERRORS_OUT.inc()
