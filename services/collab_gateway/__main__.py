"""Run the gateway: ``collab gateway`` or ``python -m collab_gateway``.

SIGTERM drains first (PROTOCOL.md, "Liveness"): ``/readyz`` turns 503, every client gets
``reconnect`` and a 1012 close, spread over the drain window; then uvicorn shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from collab_core import tracing
from collab_core.telemetry import configure_logging
from collab_gateway.app import create_app
from collab_gateway.gateway import Gateway
from collab_gateway.settings import GatewaySettings

log = logging.getLogger("collab.gateway")


class _NoQueryStrings(logging.Filter):
    """Drop the query string from uvicorn's WebSocket handshake lines (``"WebSocket %s"``).

    A token put in the URL by a client never authenticates, and must not reach the logs
    either (research/reliability.md 4.1: URLs end up in logs).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and '"WebSocket %s"' in str(record.msg):
            path = args[1]
            if isinstance(path, str) and "?" in path:
                record.args = (args[0], path.split("?", 1)[0], *args[2:])
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM or SIGINT drains the gateway before shutting down."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway
        self._drain: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        log.info("draining %d connections", self.gateway.registry.connection_count())
        self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self.gateway.drain()
        finally:
            self.should_exit = True


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, "gateway")
    tracing.configure("collab-gateway")
    app = create_app(settings)
    heartbeat = settings.heartbeat_ms / 1000
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        # Frames above max_message_bytes get a too_large error from us first; the
        # protocol layer's own cap only stops frames far beyond it.
        ws_max_size=4 * settings.max_message_bytes,
        ws_ping_interval=heartbeat,
        # PROTOCOL.md: close a connection that misses two pings.
        ws_ping_timeout=2 * heartbeat,
        ws_per_message_deflate=False,
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    # After uvicorn.Config, which configures its loggers.
    logging.getLogger("uvicorn.error").addFilter(_NoQueryStrings())
    DrainingServer(config, app.state.gateway).run()


if __name__ == "__main__":
    main()
