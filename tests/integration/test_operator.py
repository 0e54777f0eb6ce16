"""The operator's handlers against an emulated Kubernetes API and a real Redis.

kmock (an in-process Kubernetes API emulator by kopf's author) serves the GatewayPool, the
gateway Deployment and its pods; kopf's real reactor runs the real registry
(``collab_operator.main.operate``) against it, logging in through a kubeconfig that points
at kmock, as lightkube does too. Gateway load is written to a real redis-server in the
gateway's own format. Two small loops stand in for the rest of the cluster: a ReplicaSet
controller (creates pods up to ``replicas``, removes the pod with the lowest
``pod-deletion-cost`` first, keeps it terminating while it drains) and the gateways
(each live pod reports the rooms routed to it; a terminating one reports ``draining``,
then deletes its report, as ``Gateway.drain`` does).

The windows in the test's GatewayPool are short, so the whole load curve (rise, plateau,
fall) runs in about ten seconds of real time; the policy's own timing is unit-tested
without a clock. Every API request is recorded; the
test checks them against ``collab_operator.rbac`` (and so against the chart's Role, in
``tests/deploy/test_operator_rbac.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kmock
import prometheus_client
import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import RedisError

from collab_cli.redis_server import RedisServer, free_port
from collab_core import keys
from collab_operator import GROUP, PLURAL, VERSION, load, rbac
from collab_operator.kube import DELETION_COST, LOWEST_COST
from collab_operator.main import operate
from collab_operator.settings import OperatorSettings

NS = "ns1"
POOLS = f"{GROUP}/{VERSION}/{PLURAL}"
DEPLOYMENTS = "apps/v1/deployments"
PODS = "v1/pods"
LABELS = {"app.kubernetes.io/name": "collab", "app.kubernetes.io/component": "gateway"}
#: How long a removed gateway drains in the emulated cluster (its preStop + drain).
POD_DRAIN_SECONDS = 0.6
#: A new pod's gateway reports this long after the pod is created.
POD_START_SECONDS = 0.3
TARGET = 100

SPEC = {
    "deploymentName": "gw",
    "minReplicas": 1,
    "maxReplicas": 6,
    "targetConnectionsPerPod": TARGET,
    "scaleUp": {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, "tolerance": 0.1},
    "scaleDown": {"stabilizationWindowSeconds": 2, "maxPodsPerStep": 1, "tolerance": 0.1},
    "drainSeconds": 1,
    "load": {"staleAfterSeconds": 2},
}
#: 450 connections, one room of 150: 400 once capped at the target, so 4 pods.
RISE = [("big", 150)] + [(f"r{i}", 10) for i in range(30)]
#: 150 connections in rooms of 10: 1.5 pods, so 2.
FALL = [(f"f{i}", 10) for i in range(15)]


class Cluster(kmock.KubernetesEmulator):
    """kmock, plus ``metadata.generateName`` (kopf names its Events that way)."""

    _names = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> Any:
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{next(self._names)}"
        return await super()._handle(request)


def pool(name: str = "pool", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GatewayPool",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {**SPEC, **spec},
    }


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gw", "namespace": NS, "resourceVersion": "1"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {"containers": []}},
        },
        "status": {"replicas": replicas},
    }


def assign(rooms: list[tuple[str, int]], pods: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Rooms to gateways, largest first, round-robin over the pods in name order."""
    routed: dict[str, list[tuple[str, int]]] = {pod: [] for pod in pods}
    ordered = sorted(pods)
    for n, room in enumerate(sorted(rooms, key=lambda r: (-r[1], r[0]))):
        routed[ordered[n % len(ordered)]].append(room)
    return routed


@dataclass
class Pod:
    name: str
    born: float
    gone_at: float | None = None


@dataclass
class World:
    """The cluster and gateways around the operator."""

    k: Cluster
    redis: Redis
    rooms: list[tuple[str, int]]
    pods: dict[str, Pod] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=itertools.count)
    #: (pod removed, connections of every live pod just before), in order.
    removed: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    paused: bool = False

    def add_pod(self) -> None:
        name = f"gw-{next(self.numbers)}"
        self.pods[name] = Pod(name, time.monotonic())
        self.k.objects[PODS, NS, name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": LABELS},
            "status": {"phase": "Running"},
        }

    def live(self) -> list[str]:
        return sorted(name for name, pod in self.pods.items() if pod.gone_at is None)

    def cost(self, name: str) -> int:
        annotations = self.k.objects[PODS, NS, name].get("metadata", {}).get("annotations", {})
        return int(annotations.get(DELETION_COST) or 0)

    async def controller(self) -> None:
        """The ReplicaSet controller, for this test's purposes."""
        while True:
            now = time.monotonic()
            try:
                wanted = self.k.objects[DEPLOYMENTS, NS, "gw"]["spec"]["replicas"]
            except KeyError:  # not created yet
                await asyncio.sleep(0.05)
                continue
            live = self.live()
            for _ in range(wanted - len(live)):
                self.add_pod()
            if len(live) > wanted:
                # Lowest deletion cost first; among equals the newest (ReplicaSet's rules).
                victims = sorted(live, key=lambda p: (self.cost(p), -self.pods[p].born))
                for victim in victims[: len(live) - wanted]:
                    self.removed.append((victim, dict(self.loads)))
                    self.pods[victim].gone_at = now + POD_DRAIN_SECONDS
                    self.k.objects[PODS, NS, victim].patch(
                        {"metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z"}}
                    )
            for name, pod in list(self.pods.items()):
                if pod.gone_at is not None and now >= pod.gone_at:
                    del self.pods[name]
                    del self.k.objects[PODS, NS, name]
                    with contextlib.suppress(RedisError, OSError):
                        await self.redis.delete(keys.gateway_load(name))
                        await self.redis.zrem(keys.GATEWAYS, name)
            self.k.objects[DEPLOYMENTS, NS, "gw"].patch({"status": {"replicas": len(self.live())}})
            await asyncio.sleep(0.05)

    async def gateways(self) -> None:
        """Each started gateway reports the rooms routed to it every 0.2 s."""
        while True:
            now = time.monotonic()
            started = [p for p in self.live() if now - self.pods[p].born >= POD_START_SECONDS]
            routed = assign(self.rooms, started) if started else {}
            self.loads = {pod: sum(n for _, n in rooms) for pod, rooms in routed.items()}
            draining = [name for name, pod in self.pods.items() if pod.gone_at is not None]
            if not self.paused:
                try:
                    for pod in [*started, *draining]:
                        await self.report(pod, routed.get(pod, []), draining=pod in draining)
                except (RedisError, OSError):
                    pass  # Redis is down: like a real gateway, try again next time
            await asyncio.sleep(0.2)

    async def report(self, pod: str, rooms: list[tuple[str, int]], *, draining: bool) -> None:
        """What ``Gateway.report_load`` writes."""
        now = time.time()
        ordered = sorted(rooms, key=lambda r: (-r[1], r[0]))
        body = {
            "gateway": pod,
            "connections": sum(n for _, n in rooms),
            "rooms": len(rooms),
            "messages_per_second": 0.0,
            "largest_rooms": [{"doc": d, "connections": n} for d, n in ordered[:20]],
            "draining": draining,
            "ts": now,
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.gateway_load(pod), json.dumps(body), ex=15)
            pipe.zadd(keys.GATEWAYS, {pod: now})
            await pipe.execute()


# -- helpers ---------------------------------------------------------------------------


def verb(request: kmock.Request) -> str:
    if request.method == kmock.method.GET:
        if request.params.get("watch") == "true":
            return "watch"
        return "get" if request.name else "list"
    return {
        kmock.method.PATCH: "patch",
        kmock.method.POST: "create",
        kmock.method.PUT: "update",
        kmock.method.DELETE: "delete",
    }[request.method]


def api_calls(k: Cluster) -> list[kmock.Request]:
    """The operator's requests to resources (not discovery, not the test's own)."""
    return [
        r
        for r in list(k)
        if r.resource is not None
        and r.resource.plural is not None
        and not r.headers.get("User-Agent", "").startswith("kmock/")
    ]


def permission(request: kmock.Request) -> tuple[str, str, str]:
    assert request.resource is not None
    resource = str(request.resource.plural)
    if request.subresource:
        resource += f"/{request.subresource}"
    return (str(request.resource.group), resource, verb(request))


def scale_patches(k: Cluster) -> list[int]:
    return [
        r.data["spec"]["replicas"]
        for r in api_calls(k)
        if r.method == kmock.method.PATCH and r.subresource == "scale"
    ]


def events(k: Cluster) -> list[tuple[str, str, str]]:
    return [
        (r.data["type"], r.data["reason"], r.data["involvedObject"]["name"])
        for r in api_calls(k)
        if r.method == kmock.method.POST
        and r.resource is not None
        and r.resource.plural == "events"
    ]


def status(k: Cluster, name: str = "pool") -> dict[str, Any]:
    return dict(k.objects[POOLS, NS, name].get("status") or {})


def conditions(k: Cluster, name: str = "pool") -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status(k, name).get("conditions", [])}


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def metric(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    async with Cluster() as k, kmock.Server(k) as server:
        info = kmock.ResourceInfo
        # kopf waits for these two in discovery, though with scanning off it never calls them.
        k.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs={"list"})
        k.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
            kind="CustomResourceDefinition", namespaced=False, verbs={"list"}
        )
        k.resources[POOLS] = info(
            kind="GatewayPool",
            namespaced=True,
            verbs={"get", "list", "watch", "patch", "delete"},
            subresources={"status"},
            shortnames={"gwp"},
        )
        k.resources[DEPLOYMENTS] = info(
            kind="Deployment", namespaced=True, verbs={"get", "patch"}, subresources={"scale"}
        )
        k.resources[PODS] = info(kind="Pod", namespaced=True, verbs={"list", "patch"})
        k.resources["v1/events"] = info(kind="Event", namespaced=True, verbs={"create"})
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}],
                    "clusters": [{"name": "kmock", "cluster": {"server": str(server.url)}}],
                    "users": [{"name": "u", "user": {}}],
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield k


@pytest.fixture
def operator_env(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], OperatorSettings]:
    """The operator's environment as the chart sets it, with short intervals."""
    port = free_port()
    for name, value in {
        "REDIS_URL": redis_server.url,
        "POD_NAMESPACE": NS,
        "COLLAB_OPERATOR_HOST": "127.0.0.1",
        "COLLAB_OPERATOR_PORT": str(port),
        "COLLAB_OPERATOR_METRICS_PORT": "0",
        "COLLAB_OPERATOR_INTERVAL_SECONDS": "0.2",
        "COLLAB_OPERATOR_RETRY_SECONDS": "0.3",
    }.items():
        monkeypatch.setenv(name, value)
    return OperatorSettings


@pytest.fixture
async def running(
    operator_env: Callable[[], OperatorSettings],
) -> AsyncIterator[Callable[[], Awaitable[OperatorSettings]]]:
    """``await start()`` runs the operator until the test ends.

    In a thread with its own event loop, as kopf's KopfRunner does: at exit
    ``kopf.operator`` cancels every task started after it, which in the test's loop would
    include pytest-asyncio's teardown.
    """
    stop = threading.Event()
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def run(settings: OperatorSettings, ready: threading.Event) -> None:
        try:
            asyncio.run(operate(settings, stop_flag=stop, ready_flag=ready))
        except BaseException as exc:  # reported by the fixture's teardown
            failures.append(exc)

    async def start() -> OperatorSettings:
        settings = operator_env()
        ready = threading.Event()
        thread = threading.Thread(target=run, args=(settings, ready), name="operator")
        thread.start()
        threads.append(thread)
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"
        return settings

    yield start
    stop.set()
    for thread in threads:
        await asyncio.to_thread(thread.join, 20)
        assert not thread.is_alive(), "the operator did not stop"
    assert failures == []


@pytest.fixture
async def world(cluster: Cluster, redis_server: RedisServer) -> AsyncIterator[World]:
    redis = Redis.from_url(redis_server.url)
    w = World(cluster, redis, list(RISE))
    loops = [asyncio.create_task(w.controller()), asyncio.create_task(w.gateways())]
    yield w
    for task in loops:
        task.cancel()
    results = await asyncio.gather(*loops, return_exceptions=True)
    await redis.aclose()
    crashed = [r for r in results if not isinstance(r, asyncio.CancelledError)]
    assert crashed == [], f"the emulated cluster failed: {crashed}"


# -- tests -----------------------------------------------------------------------------


async def test_rise_plateau_and_fall(
    cluster: Cluster, world: World, running: Callable[[], Awaitable[OperatorSettings]]
) -> None:
    k = cluster
    k.objects[DEPLOYMENTS, NS, "gw"] = deployment(2)
    k.objects[POOLS, NS, "pool"] = pool()
    settings = await running()

    # Rise: 450 connections, one room of 150; capped at 100 per room that is 4 pods.
    await until(lambda: scale_patches(k) == [4], 10, "the scale-up")
    await until(lambda: status(k).get("desiredReplicas") == 4, 5, "the status")
    assert conditions(k)["ScalingLimited"] == ("True", "LargeRoom")
    assert "room big has 150 connections" in json.dumps(status(k))
    async with httpx.AsyncClient() as client:
        health = await client.get(f"http://127.0.0.1:{settings.port}/healthz", timeout=5)
    assert health.status_code == 200

    # Plateau: the same load for 2.5 s (more than the scale-down window) moves nothing.
    await until(lambda: len(world.live()) == 4 and len(world.loads) == 4, 5, "four gateways")
    await asyncio.sleep(2.5)
    assert scale_patches(k) == [4]
    plateau = status(k)
    assert (plateau["desiredReplicas"], plateau["currentReplicas"]) == (4, 4)
    assert plateau["observedLoad"] == pytest.approx(4.0)
    assert plateau["observedConnections"] == 450
    assert plateau["reportingGateways"] == 4

    # Fall: 150 connections, 1.5 pods: one pod per step, each after the last drained.
    world.rooms = list(FALL)
    await until(lambda: scale_patches(k) == [4, 3, 2], 15, "two scale-downs")
    await until(lambda: len(world.pods) == 2 and status(k).get("currentReplicas") == 2, 5, "2")
    await asyncio.sleep(1.0)
    assert scale_patches(k) == [4, 3, 2], "no flapping after the fall"

    # Each removed pod was the least loaded live gateway, marked before replicas dropped.
    marked = [
        r.name
        for r in api_calls(k)
        if r.resource is not None
        and r.resource.plural == "pods"
        and r.method == kmock.method.PATCH
        and r.data["metadata"]["annotations"][DELETION_COST] == LOWEST_COST
    ]
    assert marked == [name for name, _ in world.removed]
    for name, loads in world.removed:
        assert name == min(loads, key=lambda pod: (loads[pod], pod)), (name, loads)
    calls = api_calls(k)
    for i, r in enumerate(calls):
        if r.subresource == "scale" and r.data["spec"]["replicas"] < 4:
            before = [
                c for c in calls[:i] if c.resource is not None and c.resource.plural == "pods"
            ]
            assert before
            assert before[-1].method == kmock.method.PATCH

    final = status(k)
    assert (final["desiredReplicas"], final["currentReplicas"]) == (2, 2)
    assert final["observedLoad"] == pytest.approx(1.5)
    assert final["observedGeneration"] == 1
    assert final["lastScaleDownTime"]
    assert final["lastScaleTime"]
    assert conditions(k) == {
        "Ready": ("True", "Reconciled"),
        "ScalingActive": ("True", "ValidLoad"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }
    assert [e for e in events(k) if e[0] == "Normal"] == [
        ("Normal", "ScaledUp", "pool"),
        ("Normal", "ScaledDown", "pool"),
        ("Normal", "ScaledDown", "pool"),
    ]
    # LargeRoom once, when the big room appeared (the first tick may also have seen no
    # report yet: the pods start reporting 0.3 s after they are created).
    assert [e for e in events(k) if e[0] == "Warning" and e[1] != "NoLoadReports"] == [
        ("Warning", "LargeRoom", "pool")
    ]
    assert metric("collab_operator_desired_replicas", pool=f"{NS}/pool") == 2
    assert metric("collab_operator_current_replicas", pool=f"{NS}/pool") == 2
    assert metric("collab_operator_load", pool=f"{NS}/pool") == pytest.approx(1.5)
    assert (
        metric("collab_operator_scale_events_total", pool=f"{NS}/pool", direction="down") or 0
    ) >= 2

    # Deleting the pool: kopf stops the timer, forgets the metrics, removes its finalizer.
    assert k.objects[POOLS, NS, "pool"]["metadata"]["finalizers"] == [f"{GROUP}/finalizer"]
    async with k.delete(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/pool") as response:
        assert response.status == 200
    await until(lambda: k.objects[POOLS, NS, "pool"].deleted, 5, "the finalizer to go")
    assert metric("collab_operator_desired_replicas", pool=f"{NS}/pool") is None

    # Least privilege: exactly what collab_operator.rbac declares, and nothing else.
    used = {permission(r) for r in api_calls(k)}
    assert used == rbac.permissions()
    assert {r.namespace for r in api_calls(k)} == {NS}


async def test_faults_are_reported_in_the_status(
    cluster: Cluster,
    world: World,
    redis_server: RedisServer,
    running: Callable[[], Awaitable[OperatorSettings]],
) -> None:
    k = cluster
    world.rooms = [(f"d{i}", 10) for i in range(10)]
    k.objects[DEPLOYMENTS, NS, "gw"] = deployment(1)
    k.objects[POOLS, NS, "pool"] = pool()
    k.objects[POOLS, NS, "invalid"] = pool("invalid", minReplicas=5, maxReplicas=3)
    k.objects[POOLS, NS, "orphan"] = pool("orphan", deploymentName="nowhere")
    await running()

    await until(lambda: "Ready" in conditions(k, "invalid"), 5, "the invalid pool's status")
    assert conditions(k, "invalid")["Ready"] == ("False", "InvalidSpec")
    assert "minReplicas (5) must not exceed maxReplicas (3)" in json.dumps(status(k, "invalid"))
    await until(lambda: "Ready" in conditions(k, "orphan"), 5, "the orphan pool's status")
    assert conditions(k, "orphan")["Ready"] == ("False", "DeploymentNotFound")
    await until(lambda: conditions(k).get("Ready") == ("True", "Reconciled"), 5, "pool ready")
    assert scale_patches(k) == []

    # Redis goes away: the operator says so and scales nothing; then it recovers.
    redis_server.stop()
    await until(lambda: conditions(k).get("Ready") == ("False", "LoadUnavailable"), 5, "outage")
    assert conditions(k)["ScalingActive"] == ("False", "RedisUnavailable")
    errors = metric("collab_operator_reconcile_errors_total", pool=f"{NS}/pool", reason="redis")
    assert errors is not None
    assert errors >= 1
    redis_server.start()
    world.rooms = [(f"d{i}", 10) for i in range(25)]
    await until(lambda: scale_patches(k) == [3], 10, "the scale-up after the outage")
    await until(lambda: conditions(k).get("Ready") == ("True", "Reconciled"), 5, "recovery")

    # Gateways stop reporting: no load, no scaling, and never a scale-down.
    world.paused = True
    await until(lambda: conditions(k).get("ScalingActive") == ("False", "NoLoadReports"), 8, "")
    assert scale_patches(k) == [3]
    warnings = {reason for kind, reason, _ in events(k) if kind == "Warning"}
    assert {"InvalidSpec", "DeploymentNotFound", "LoadUnavailable", "NoLoadReports"} <= warnings


async def test_load_reader_against_redis(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        good = {
            "gateway": "gw-a",
            "connections": 3,
            "rooms": 1,
            "messages_per_second": 0.5,
            "largest_rooms": [{"doc": "notes", "connections": 3}],
            "draining": False,
            "ts": 1.0,
        }
        await redis.set(keys.gateway_load("gw-a"), json.dumps(good))
        await redis.zadd(keys.GATEWAYS, {"gw-a": 1.0, "gw-gone": 0.5})
        await redis.set(keys.gateway_load("gw-bad"), b"{not json")
        await redis.set(keys.gateway_load("gw-other"), json.dumps({**good, "gateway": "gw-a"}))
        seen = await load.read(redis, ["gw-a", "gw-bad", "gw-other", "gw-gone", "gw-never"])
        assert seen["gw-a"].report is not None
        assert seen["gw-a"].report.connections == 3
        assert seen["gw-a"].last_seen == 1.0
        assert seen["gw-bad"].report is None
        assert seen["gw-other"].report is None
        assert (seen["gw-gone"].report, seen["gw-gone"].last_seen) == (None, 0.5)
        assert (seen["gw-never"].report, seen["gw-never"].last_seen) == (None, None)
        assert await load.read(redis, []) == {}
    finally:
        await redis.aclose()


async def test_collab_operator_command(
    cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """``collab operator``: scales, serves /healthz and /metrics on their ports, stops on
    SIGTERM."""
    k = cluster
    k.objects[DEPLOYMENTS, NS, "gw"] = deployment(1)
    k.objects[POOLS, NS, "pool"] = pool(minReplicas=2)
    health, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "POD_NAMESPACE": NS,
        "COLLAB_OPERATOR_HOST": "127.0.0.1",
        "COLLAB_OPERATOR_PORT": str(health),
        "COLLAB_OPERATOR_METRICS_PORT": str(metrics_port),
        "COLLAB_OPERATOR_INTERVAL_SECONDS": "0.2",
        "COLLAB_OPERATOR_LOG_LEVEL": "warning",
    }
    log = (tmp_path / "operator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "collab_cli", "operator"], env=env, stdout=log, stderr=log
    )
    try:
        # Below minReplicas with no reports at all: the bound still holds.
        await until(lambda: scale_patches(k) == [2], 20, "the operator's first scale")
        async with httpx.AsyncClient() as client:
            live = await client.get(f"http://127.0.0.1:{health}/healthz", timeout=5)
            assert live.status_code == 200
            text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
        assert 'collab_operator_desired_replicas{pool="ns1/pool"} 2.0' in text
        assert "collab_operator_reconcile_seconds_bucket" in text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
