"""Run the operator: ``collab operator`` or ``python -m collab_operator``.

The handlers are registered here rather than with decorators at import time, so that the
timer's interval comes from the settings and a test can run the real registry against an
emulated API server. kopf runs standalone (no peering objects): the chart runs one
replica with the Recreate strategy, which is what kopf's docs advise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf
import prometheus_client

from collab_core.telemetry import configure_logging
from collab_operator import GROUP, PLURAL, VERSION, handlers
from collab_operator.settings import OperatorSettings

log = logging.getLogger("collab.operator")


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # kopf's own logins for when no client library is installed: the pod's service
    # account in a cluster, else $KUBECONFIG or ~/.kube/config.
    kopf.on.login(registry=registry, id="service-account")(kopf.login_with_service_account)
    kopf.on.login(registry=registry, id="kubeconfig")(kopf.login_with_kubeconfig)
    kopf.on.startup(registry=registry, id="configure")(handlers.configure)
    kopf.on.cleanup(registry=registry, id="close")(handlers.close)
    kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="reconcile",
        interval=settings.interval_seconds,
        # Gateways report every few seconds: one interval after start, a freshly
        # restarted operator sees reports rather than an empty Redis.
        initial_delay=settings.interval_seconds,
        # No ``idle``: it is reset by every change of the object, and each tick writes
        # the status, so an idle delay longer than the interval would stop the timer.
    )(handlers.reconcile)
    kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="forget", optional=True)(
        handlers.forget
    )
    return registry


def _scope(settings: OperatorSettings) -> dict[str, Any]:
    if settings.namespace:
        return {"namespaces": [settings.namespace]}
    return {"clusterwide": True}


async def operate(
    settings: OperatorSettings,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    memo: kopf.Memo | None = None,
) -> None:
    """The operator as a coroutine, until ``stop_flag`` is set (tests use this).

    At exit ``kopf.operator`` cancels every task started after it: give it a loop of its
    own.
    """
    memo = memo if memo is not None else kopf.Memo()
    memo.settings = settings
    await kopf.operator(
        registry=build_registry(settings),
        standalone=True,
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=memo,
        **_scope(settings),
    )


def main() -> None:
    settings = OperatorSettings()
    configure_logging(settings.log_level, "operator")
    if settings.metrics_port:
        # kopf's liveness server serves only its one path, so metrics get a port of
        # their own.
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host)
    log.info(
        "watching GatewayPools in %s; liveness on :%d/healthz, metrics on :%d/metrics",
        settings.namespace or "all namespaces",
        settings.port,
        settings.metrics_port,
    )
    asyncio.run(operate(settings))


if __name__ == "__main__":
    main()
