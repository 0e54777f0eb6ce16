"""gateway: WebSocket connections, the HTTP API, and fan-out of committed ops."""
