"""The kopf handlers: thin adapters between kopf, the policy and the I/O modules.

One timer per GatewayPool reads the Deployment and its pods (``kube``), the pods' load
reports (``load``), asks the policy (``scaling.decide``), marks the pods to remove, patches
``replicas`` and writes the status. Faults map to kopf's error tree: Redis or API trouble
raises ``TemporaryError`` (retried after ``retry_seconds``), an unusable spec
``PermanentError`` (tried again on the next interval, by which time it may be fixed). Both
first write the reason into the conditions: kopf applies the status patch of a timer even
when the handler fails.

Handler ids persist in kopf's annotations on the resource: do not rename them casually.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from redis.asyncio import Redis
from redis.exceptions import RedisError

from collab_core.service import REDIS_ERRORS, connect
from collab_core.service import close as close_redis
from collab_operator import GROUP, load, metrics, scaling
from collab_operator import spec as pool_spec
from collab_operator import status as pool_status
from collab_operator.kube import LOWEST_COST, Kube, KubeError, PodState
from collab_operator.scaling import Condition, Decision, Gateway, PoolState
from collab_operator.settings import OperatorSettings

log = logging.getLogger("collab.operator")

#: Redis down, refusing, frozen or answering with an error: retried.
LOAD_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, RedisError)


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Startup: kopf's settings, then the Redis and Kubernetes clients (shared by pools)."""
    config: OperatorSettings = memo.settings
    # The CRD ships with the chart, so there is nothing to discover at run time; without
    # scanning kopf needs no access to CustomResourceDefinitions or Namespaces.
    settings.scanning.disabled = True
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Only kopf.event() calls become Events, not the log lines of every tick.
    settings.posting.loggers = False
    # At exit, let a tick in flight finish (it may have marked a pod and not yet scaled)
    # instead of abandoning it; kopf gives timers no time of their own.
    settings.background.instant_exit_timeout = 10.0
    memo.redis = connect(config.redis_url)
    memo.kube = Kube.from_environment()


async def close(memo: kopf.Memo, **_: Any) -> None:
    """Cleanup: close the clients."""
    redis: Redis = memo.redis
    kube: Kube = memo.kube
    await close_redis(redis)
    await kube.close()


async def forget(name: str, namespace: str | None, **_: Any) -> None:
    """A deleted pool: drop its metrics (its timer and memo go with it)."""
    metrics.forget(f"{namespace}/{name}")


async def reconcile(
    *,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    **_: Any,
) -> None:
    """One tick of one pool: read, decide, mark, scale, report."""
    assert namespace is not None, "GatewayPool is a namespaced resource"
    with metrics.RECONCILE_SECONDS.time():
        tick = Tick(
            pool=f"{namespace}/{name}",
            now=time.time(),
            generation=meta.get("generation"),
            status=status,
            body=body,
            patch=patch,
            retry=memo.settings.retry_seconds,
        )
        try:
            wanted = pool_spec.parse(spec)
        except pool_spec.InvalidSpec as exc:
            failure = tick.fail("spec", _not_ready("InvalidSpec", str(exc)))
            raise kopf.PermanentError(failure) from None

        kube: Kube = memo.kube
        try:
            deployment = await kube.deployment(namespace, wanted.deployment_name)
            pods = await kube.pods(namespace, deployment.selector)
        except KubeError as exc:
            reason = "DeploymentNotFound" if exc.not_found else "KubernetesError"
            failure = tick.fail("kubernetes", _not_ready(reason, str(exc)))
            raise kopf.TemporaryError(failure, delay=tick.retry) from None

        try:
            sightings = await load.read(memo.redis, [pod.name for pod in pods])
        except LOAD_ERRORS as exc:
            text = f"cannot read load reports: {exc}"
            failure = tick.fail(
                "redis",
                _not_ready("LoadUnavailable", text),
                Condition("ScalingActive", "False", "RedisUnavailable", text),
            )
            raise kopf.TemporaryError(failure, delay=tick.retry) from None

        gateways = [
            Gateway(pod.name, seen.report, pod.terminating, seen.last_seen)
            for pod in pods
            for seen in [sightings[pod.name]]
        ]
        state = memo.get("state") or PoolState(
            last_scale_down=pool_status.parse_timestamp(status.get("lastScaleDownTime"))
        )
        decision = scaling.decide(gateways, deployment.replicas, state, wanted, tick.now)
        try:
            await apply(kube, namespace, wanted.deployment_name, decision, pods)
        except KubeError as exc:
            failure = tick.fail("kubernetes", _not_ready("KubernetesError", str(exc)))
            raise kopf.TemporaryError(failure, delay=tick.retry) from None
        memo.state = decision.state

        ready = Condition(
            "Ready",
            "True",
            "Reconciled",
            f"scaling deployment {wanted.deployment_name} between "
            f"{wanted.min_replicas} and {wanted.max_replicas} replicas",
        )
        tick.succeed(decision, ready, pods=deployment.pods)


async def apply(
    kube: Kube, namespace: str, deployment: str, decision: Decision, pods: Sequence[PodState]
) -> None:
    """Carry out ``decision``: on a scale-down, first give the pods to remove the lowest
    deletion cost (and take it from pods an abandoned scale-down marked), then scale."""
    if decision.desired == decision.current:
        return
    if decision.drain:
        marks = set(decision.marks)
        for pod in pods:
            if pod.deletion_cost == LOWEST_COST and pod.name not in marks:
                await kube.set_deletion_cost(namespace, pod.name, None)
            elif pod.name in marks and pod.deletion_cost != LOWEST_COST:
                await kube.set_deletion_cost(namespace, pod.name, LOWEST_COST)
    await kube.scale(namespace, deployment, decision.desired)


def _not_ready(reason: str, message: str) -> Condition:
    return Condition("Ready", "False", reason, message)


class Tick:
    """The outcome side of one reconciliation: status patch, Events and metrics."""

    def __init__(
        self,
        *,
        pool: str,
        now: float,
        generation: int | None,
        status: Mapping[str, Any],
        body: kopf.Body,
        patch: kopf.Patch,
        retry: float,
    ) -> None:
        self.pool = pool
        self.now = now
        self.generation = generation
        self.status = status
        self.body = body
        self.patch = patch
        self.retry = retry
        metrics.track(pool)

    def fail(self, kind: str, *conditions: Condition) -> str:
        """Record a failed tick in the status, an Event and the metrics; returns the
        message for the error the handler raises."""
        metrics.RECONCILE_ERRORS.labels(self.pool, kind).inc()
        self.patch.status.update(
            pool_status.failed(
                conditions, status=self.status, generation=self.generation, now=self.now
            )
        )
        self._warn(conditions)
        # kopf logs the error the handler raises with this message.
        return conditions[0].message

    def succeed(self, decision: Decision, ready: Condition, *, pods: int) -> None:
        self.patch.status.update(
            pool_status.reconciled(
                decision,
                replicas=pods,
                ready=ready,
                status=self.status,
                generation=self.generation,
                now=self.now,
            )
        )
        metrics.DESIRED.labels(self.pool).set(decision.desired)
        metrics.CURRENT.labels(self.pool).set(pods)
        metrics.LOAD.labels(self.pool).set(decision.load.pods)
        if decision.desired != decision.current:
            direction = "up" if decision.desired > decision.current else "down"
            metrics.SCALE_EVENTS.labels(self.pool, direction).inc()
            message = decision.message
            if decision.marks:
                message += f"; {', '.join(decision.marks)} removed first (pod-deletion-cost)"
            kopf.event(self.body, type="Normal", reason=decision.reason.value, message=message)
            log.info("%s: %s", self.pool, message)
        self._warn((ready, *decision.conditions))

    def _warn(self, conditions: Sequence[Condition]) -> None:
        for condition in pool_status.entered_trouble(self.status, conditions):
            kopf.event(
                self.body, type="Warning", reason=condition.reason, message=condition.message
            )
