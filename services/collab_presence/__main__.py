"""Run presence: ``collab presence`` or ``python -m collab_presence``."""

from __future__ import annotations

from collab_core import tracing
from collab_core.service import Supervisor, connect, health_app, serve
from collab_core.telemetry import configure_logging
from collab_presence.settings import PresenceSettings
from collab_presence.worker import Worker


def main() -> None:
    settings = PresenceSettings()
    configure_logging(settings.log_level, "presence")
    tracing.configure("collab-presence")
    redis = connect(settings.redis_url)
    worker = Worker(
        redis,
        consumer=settings.consumer,
        shards=settings.ingress_shards,
        partition=settings.partition,
        partitions=settings.partitions,
        flush_ms=settings.flush_ms,
        expire_check_seconds=settings.expire_check_seconds,
        lease_ms=settings.lease_ms,
    )
    supervisor = Supervisor(redis, worker.run, name="presence")
    serve(
        health_app(supervisor), host=settings.host, port=settings.port, log_level=settings.log_level
    )


if __name__ == "__main__":
    main()
