"""Run edit-transform: ``collab transform`` or ``python -m collab_transform``."""

from __future__ import annotations

from collab_core import tracing
from collab_core.service import Supervisor, connect, health_app, serve
from collab_core.telemetry import configure_logging
from collab_transform.settings import TransformSettings
from collab_transform.worker import FaultHook, Worker


def main() -> None:
    settings = TransformSettings()
    configure_logging(settings.log_level, "edit-transform")
    tracing.configure("collab-transform")
    redis = connect(settings.redis_url)
    worker = Worker(
        redis,
        consumer=settings.consumer,
        shards=settings.ingress_shards,
        max_document_chars=settings.max_document_chars,
        snapshot_every=settings.snapshot_every,
        batch=settings.batch,
        claim_idle_ms=settings.claim_idle_ms,
        fault=FaultHook.parse(settings.fault) if settings.fault else None,
        wait_replicas=settings.wait_replicas,
        wait_timeout_ms=settings.wait_timeout_ms,
    )
    supervisor = Supervisor(
        redis, worker.run, name="edit-transform", on_restart=worker.committer.clear
    )
    serve(
        health_app(supervisor), host=settings.host, port=settings.port, log_level=settings.log_level
    )


if __name__ == "__main__":
    main()
