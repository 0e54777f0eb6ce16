"""Prometheus metrics of the gateway, declared once. No document or user labels."""

from prometheus_client import Counter, Gauge, Histogram

from collab_core.telemetry import LATENCY_BUCKETS

CONNECTIONS = Gauge("collab_gateway_connections", "Open WebSocket connections.")
ROOMS = Gauge("collab_gateway_rooms", "Documents with at least one connection here.")
CONNECTS = Counter("collab_gateway_connects_total", "WebSocket connections accepted.")
RESUMES = Counter("collab_gateway_resumes_total", "Connections that resumed with since.")
DISCONNECTS = Counter(
    "collab_gateway_disconnects_total", "Connections closed, by reason.", ["reason"]
)
MESSAGES_IN = Counter("collab_gateway_messages_in_total", "Client messages, by type.", ["type"])
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
