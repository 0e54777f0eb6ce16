"""The services on a Redis Cluster: 3 masters with a replica each, started on loopback.

The stack here runs two gateways, two edit-transform replicas and two presence partitions
against the cluster, with six ingress shards spread over the masters. The convergence,
ordering and idempotency tests of the single-Redis suite are imported and run unchanged
on it (pytest collects them here with this module's ``stack`` and ``stack_factory``);
then the cluster's own faults: a master killed mid-load (its replica takes over) and a
live document's slot moved to another master while clients edit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from tests.integration.chaos import violations
from tests.integration.conftest import Stack
from tests.integration.test_acceptance import (  # noqa: F401 - collected here, on the cluster
    test_client_dropped_mid_editing_resumes_and_nothing_applies_twice,
    test_hundred_clients_in_one_room_all_receive_and_converge,
)
from tests.integration.test_convergence import (  # noqa: F401
    test_twelve_clients_random_edits_and_reconnects_converge,
    test_two_gateways_two_workers_share_documents_without_forks,
)
from tests.integration.test_presence import (  # noqa: F401
    test_client_sees_remote_cursor_in_local_coordinates,
    test_cursor_updates_are_coalesced,
    test_join_presence_and_leave,
    test_sessions_of_a_killed_gateway_leave_with_timeout,
)
from tests.integration.test_protocol_flow import (  # noqa: F401
    test_acks_and_ops_arrive_in_version_order_without_gaps,
    test_resend_after_reconnect_with_since_is_recognised,
    test_resend_on_the_same_connection_is_acked_again_and_not_applied_twice,
    test_same_id_with_different_content_is_invalid_op,
    test_welcome_shape_and_participants,
)

from collab_cli.redis_cluster import RedisCluster
from collab_core import keys

SHARDS = 6


class SharedCluster:
    """A cluster as a :class:`Stack`'s Redis: a test's stack never stops it."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.url = cluster.url

    def stop(self) -> None:
        pass


def flush(cluster: RedisCluster) -> None:
    for port in cluster.masters():
        client = redis.Redis(port=port)
        try:
            client.flushall()
        finally:
            client.close()


def start_services(stack: Stack, *, gateways: int, transforms: int, presences: int, **env: str):
    env = {"COLLAB_INGRESS_SHARDS": str(SHARDS), **env}
    for _ in range(transforms):
        stack.add("transform", **env)
    for partition in range(presences):
        stack.add(
            "presence",
            COLLAB_PRESENCE_PARTITION=str(partition),
            COLLAB_PRESENCE_PARTITIONS=str(presences),
            COLLAB_PRESENCE_CONSUMER=f"presence-{partition}",
            **env,
        )
    for _ in range(gateways):
        stack.add("gateway", **env)
    for service in stack.services:
        service.wait_ready(timeout=40)


@contextlib.contextmanager
def stacks_on(cluster: RedisCluster, root: Path, *, shared: bool) -> Iterator[object]:
    made: list[Stack] = []

    def make(
        *, start: bool = True, gateways: int = 2, transforms: int = 2, presences: int = 2, **env
    ) -> Stack:
        if shared:
            flush(cluster)  # each test starts from an empty store, as on a single Redis
        path = root / f"stack-{len(made)}"
        path.mkdir()
        stack = Stack(path, SharedCluster(cluster))  # type: ignore[arg-type]
        made.append(stack)
        if start:
            start_services(
                stack, gateways=gateways, transforms=transforms, presences=presences, **env
            )
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    started = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def stack_factory(cluster: RedisCluster, tmp_path: Path) -> Iterator[object]:
    """Stacks on the module's cluster (flushed first): 2 gateways, 2 edit-transform, 2
    presence partitions unless told otherwise."""
    with stacks_on(cluster, tmp_path, shared=True) as make:
        yield make


@pytest.fixture
def stack(stack_factory) -> Stack:
    return stack_factory()


def docs_on_every_master(cluster: RedisCluster, prefix: str) -> dict[int, str]:
    """A document id per master, owning a slot there."""
    found: dict[int, str] = {}
    masters = set(cluster.masters())
    n = 0
    while set(found) != masters:
        doc = f"{prefix}-{n}"
        found.setdefault(cluster.master_of_slot(cluster.slot_of(keys.log(doc))), doc)
        n += 1
    return found


def test_documents_and_ingress_shards_spread_over_every_master(cluster) -> None:
    masters = set(cluster.masters())
    assert len(masters) == 3
    shards = {cluster.master_of_slot(cluster.slot_of(keys.op_ingress(n))) for n in range(SHARDS)}
    assert shards == masters
    doc = "spread"
    tags = {cluster.slot_of(key) for key in (keys.head(doc), keys.log(doc), keys.hosts(doc))}
    assert len(tags) == 1, "a document's keys must share one slot"


async def test_documents_on_every_master_converge(stack, chaos) -> None:
    docs = docs_on_every_master(stack.redis.cluster, "everywhere")
    async with contextlib.AsyncExitStack() as exits:
        runs = [
            await exits.enter_async_context(chaos(stack, doc, clients=3, seed=i))
            for i, doc in enumerate(docs.values())
        ]
        await asyncio.gather(*(run.load(3.0, drops=0.01) for run in runs))
        for run in runs:
            await run.settle()
    for doc in docs.values():
        assert stack.document(doc)["version"] > 0


async def settle_counting_losses(run, stack, doc: str) -> int:
    """Quiescence, then the oracle; acked ops missing from the history are counted, not
    failed on (the caller decides), and every other invariant must hold."""
    await asyncio.gather(*(c.synced(timeout=90) for c in run.clients))
    document = stack.document(doc)
    await asyncio.gather(*(c.reaches(document["version"], timeout=60) for c in run.clients))
    problems = violations(run.clients, stack.history(doc), document)
    lost = [p for p in problems if "is not its op in the history" in p]
    others = [p for p in problems if p not in lost]
    assert not others, "\n".join(others[:40])
    return len(lost)


@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_master_killed_mid_load_its_replica_takes_over(
    tmp_path: Path, chaos, wait_replicas: int, record_property
) -> None:
    """kill -9 of the master owning some documents, mid-load; its replica is promoted.
    Every client converges. With edit-transform waiting for one replica (WAIT) an op is
    acknowledged only once the replica has it, so no acknowledged op may be lost; without
    it, the acknowledged ops lost in the failover window are counted and reported."""
    cluster = RedisCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1500)
    cluster.start()
    try:
        with stacks_on(cluster, tmp_path, shared=False) as make:
            stack = make(COLLAB_TRANSFORM_WAIT_REPLICAS=str(wait_replicas))
            docs = docs_on_every_master(cluster, "failover")
            victim = next(iter(docs))
            async with contextlib.AsyncExitStack() as exits:
                runs = {
                    doc: await exits.enter_async_context(chaos(stack, doc, clients=3, seed=i))
                    for i, doc in enumerate(docs.values())
                }
                await asyncio.gather(*(run.load(2.0) for run in runs.values()))
                cluster.kill(victim)
                await asyncio.gather(*(run.load(1.0) for run in runs.values()))
                await asyncio.to_thread(cluster.wait_for_failover, victim, 60)
                await asyncio.gather(*(run.load(2.0) for run in runs.values()))
                lost = {
                    doc: await settle_counting_losses(run, stack, doc) for doc, run in runs.items()
                }
            acked = sum(len(c.acks) for run in runs.values() for c in run.clients)
            record_property("acked_ops", acked)
            record_property("acked_ops_lost_in_failover", sum(lost.values()))
            print(f"failover (wait_replicas={wait_replicas}): {acked} acked, lost {lost}")
            untouched = [doc for port, doc in docs.items() if port != victim]
            assert all(lost[doc] == 0 for doc in untouched)
            if wait_replicas:
                assert sum(lost.values()) == 0, f"acknowledged ops lost: {lost}"
    finally:
        cluster.stop()


async def test_moving_a_live_documents_slot_loses_and_repeats_nothing(stack, chaos) -> None:
    """The slot of a document being edited moves to another master (MIGRATING/IMPORTING,
    keys migrated while clients write: ASK and TRYAGAIN replies, then MOVED). Nothing is
    lost, nothing applied twice, every client converges."""
    cluster = stack.redis.cluster
    doc = "moving"
    slot = cluster.slot_of(keys.log(doc))
    source = cluster.master_of_slot(slot)
    target = next(port for port in cluster.masters() if port != source)
    async with chaos(stack, doc, clients=4) as run:
        await run.load(1.5)
        mover = asyncio.create_task(asyncio.to_thread(cluster.move_slot, slot, target))
        while not mover.done():
            await run.load(0.2)
        await mover
        await run.load(1.5)
        await run.settle(timeout=90)
    assert cluster.master_of_slot(slot) == target
    assert stack.document(doc)["version"] == len(stack.history(doc))
