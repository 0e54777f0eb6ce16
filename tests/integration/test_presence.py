"""Presence: join, cursors, leave, and timeouts when a gateway dies."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import redis
import websockets

from collab_client.connection import CollabClient
from collab_core import keys


async def next_of(ws, kind: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def join(stack, doc: str, user: str, gateway=None):
    ws = await websockets.connect(stack.ws_url(doc, gateway))
    await ws.send(json.dumps({"type": "hello", "token": stack.token(user), "client": user}))
    welcome = json.loads(await ws.recv())
    return ws, welcome


async def test_join_presence_and_leave(stack) -> None:
    ada, _ = await join(stack, "cursors", "ada")
    lin, wl = await join(stack, "cursors", "lin")
    joined = await next_of(ada, "join")
    assert joined["participant"]["session"] == wl["session"]
    assert joined["participant"]["user"]["id"] == "lin"
    await lin.send(json.dumps({"type": "op", "id": "1", "v": 0, "op": ["hello"]}))
    await lin.send(
        json.dumps(
            {
                "type": "presence",
                "v": 1,
                "cursor": {"anchor": 2, "head": 5},
                "meta": {"typing": True},
            }
        )
    )
    presence = await next_of(ada, "presence")
    assert presence == {
        "type": "presence",
        "session": wl["session"],
        "user": wl["user"],
        "v": 1,
        "cursor": {"anchor": 2, "head": 5},
        "meta": {"typing": True},
    }
    await lin.close()
    left = await next_of(ada, "leave")
    assert left == {"type": "leave", "session": wl["session"], "reason": "closed"}
    await ada.close()


async def test_cursor_updates_are_coalesced(stack) -> None:
    ada, _ = await join(stack, "coalesce", "ada")
    lin, _ = await join(stack, "coalesce", "lin")
    await next_of(ada, "join")
    await lin.send(json.dumps({"type": "op", "id": "1", "v": 0, "op": ["x" * 50]}))
    for i in range(40):
        await lin.send(json.dumps({"type": "presence", "v": 1, "cursor": {"anchor": i, "head": i}}))
    seen: list[int] = []
    async with asyncio.timeout(15):
        while not seen or seen[-1] != 39:
            message = json.loads(await ada.recv())
            if message["type"] == "presence":
                seen.append(message["cursor"]["anchor"])
    assert len(seen) < 40
    await ada.close()
    await lin.close()


async def test_sessions_of_a_killed_gateway_leave_with_timeout(stack_factory) -> None:
    stack = stack_factory(gateways=2)
    survivor, doomed = stack.of("gateway")
    ada, _ = await join(stack, "orphans", "ada", survivor)
    _, wl = await join(stack, "orphans", "lin", doomed)
    await next_of(ada, "join")
    started = time.monotonic()
    doomed.kill()
    left = await next_of(ada, "leave", timeout=30)
    assert left == {"type": "leave", "session": wl["session"], "reason": "timeout"}
    assert time.monotonic() - started < 30
    await ada.close()


async def test_client_sees_remote_cursor_in_local_coordinates(stack) -> None:
    async with (
        CollabClient(stack.ws_url("mapped"), stack.token("ada")) as ada,
        CollabClient(stack.ws_url("mapped"), stack.token("lin")) as lin,
    ):
        await ada.synced()
        await lin.synced()
        ada.insert(0, "hello world")
        await ada.synced()
        await lin.reaches(1)
        lin.set_cursor(6, 11)
        await ada.wait_for(
            lambda: any(p.cursor is not None for p in ada.state.participants.values())
        )
        (peer,) = [p for p in ada.state.participants.values() if p.cursor is not None]
        assert (peer.cursor.anchor, peer.cursor.head) == (6, 11)
        ada.insert(0, ">> ")
        assert (peer := ada.state.participants[peer.session]).cursor is not None
        assert (peer.cursor.anchor, peer.cursor.head) == (9, 14)


def docs_per_shard(shards: int) -> list[str]:
    """One document id in each ingress shard."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < shards:
        found.setdefault(keys.shard_of(f"split-{n}", shards), f"split-{n}")
        n += 1
    return [found[s] for s in range(shards)]


def start_partition(stack, partition: int, partitions: int, shards: int):
    """Presence as the chart runs it: pod n of a StatefulSet is partition n, named after it."""
    service = stack.add(
        "presence",
        COLLAB_INGRESS_SHARDS=str(shards),
        COLLAB_PRESENCE_PARTITIONS=str(partitions),
        COLLAB_PRESENCE_PARTITION=str(partition),
        COLLAB_PRESENCE_CONSUMER=f"presence-{partition}",
    )
    service.wait_ready()
    return service


def shards_owned(service) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.port}/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith("collab_presence_shards_owned ")]
    return float(line.split()[1])


async def owns(service, count: int, timeout: float = 15) -> None:
    for _ in range(int(timeout * 10)):
        if shards_owned(service) == count:
            return
        await asyncio.sleep(0.1)
    assert shards_owned(service) == count


async def test_partitions_resplit_one_pod_at_a_time_and_no_shard_has_two_owners(
    stack_factory,
) -> None:
    """Three presence partitions become two the way a StatefulSet does it: pod 2 goes,
    then pods 1 and 0 are replaced one at a time. A new pod waits for a shard an old pod
    still owns; rosters survive in their new owners; a join read by the removed pod but
    never acknowledged still reaches the room."""
    shards = 6
    stack = stack_factory(start=False)
    stack.add("transform", COLLAB_INGRESS_SHARDS=str(shards))
    gateway = stack.add("gateway", COLLAB_INGRESS_SHARDS=str(shards))
    gateway.wait_ready()
    old = [start_partition(stack, n, 3, shards) for n in range(3)]
    for service in old:
        await owns(service, 2)
    docs = docs_per_shard(shards)
    watchers, leavers, sessions, newcomers = {}, {}, {}, {}
    for doc in docs:
        watchers[doc], _ = await join(stack, doc, "ada")
        leavers[doc], welcome = await join(stack, doc, "lin")
        sessions[doc] = welcome["session"]
        joined = await next_of(watchers[doc], "join")
        assert joined["participant"]["user"]["id"] == "lin", doc

    # Scale down: pod 2 stops. A join on its shard 2 is read by it, which then dies
    # before acknowledging it (played here by reading as its consumer).
    old[2].stop()
    newcomers[docs[2]], _ = await join(stack, docs[2], "kim")
    client = redis.Redis.from_url(stack.redis.url)
    try:
        stream = keys.presence_ingress(2)
        for _ in range(200):
            read = client.xreadgroup(keys.PRESENCE_GROUP, "presence-2", {stream: ">"})
            if read:
                break
            await asyncio.sleep(0.05)
        assert read
        assert read[0][1]
    finally:
        client.close()

    # Pod 1 is replaced: the new one owns shards 1, 3 and 5, but old pod 0 still owns 3.
    old[1].stop()
    new1 = start_partition(stack, 1, 2, shards)
    await owns(new1, 2)
    await asyncio.sleep(1.5)
    assert shards_owned(new1) == 2
    # Shard 3's documents are still served by old pod 0, and only by it.
    newcomers[docs[3]], _ = await join(stack, docs[3], "kim")
    joined = await next_of(watchers[docs[3]], "join", timeout=10)
    assert joined["participant"]["user"]["id"] == "kim"

    # Pod 0 is replaced: its shard 3 passes to the new pod 1.
    old[0].stop()
    start_partition(stack, 0, 2, shards)
    await owns(new1, 3)
    for doc in docs:
        if doc not in newcomers:
            newcomers[doc], _ = await join(stack, doc, "kim")
    for doc in docs:
        if doc != docs[3]:
            joined = await next_of(watchers[doc], "join", timeout=10)
            assert joined["participant"]["user"]["id"] == "kim", doc
        # The roster the new owner restored: a late joiner sees everyone else.
        late, welcome = await join(stack, doc, "sam")
        users = sorted(p["user"]["id"] for p in welcome["participants"])
        assert users == ["ada", "kim", "lin"], doc
        await late.close()
        # A leave of a session the old pods had tracked reaches the room.
        await leavers[doc].close()
        while (await next_of(watchers[doc], "leave", timeout=10))["session"] != sessions[doc]:
            pass
    # Nothing is left pending on the consumer of the removed pod.
    client = redis.Redis.from_url(stack.redis.url)
    try:
        for shard in range(shards):
            pending = client.xpending(keys.presence_ingress(shard), keys.PRESENCE_GROUP)
            holders = {c["name"].decode() for c in pending["consumers"]}
            assert "presence-2" not in holders, shard
    finally:
        client.close()
    for doc in docs:
        await watchers[doc].close()
        await newcomers[doc].close()


async def test_a_killed_owners_shards_pass_on_when_its_lease_expires_and_a_woken_one_yields(
    stack_factory,
) -> None:
    """A presence process killed outright keeps its shards until its lease expires; then a
    process of another name takes them over and restores the roster. A process frozen
    past its lease finds it taken when it wakes and stops consuming (it waits for the
    lease again)."""
    lease = {"COLLAB_PRESENCE_LEASE_MS": "3000"}
    stack = stack_factory(start=False)
    stack.add("transform")
    stack.add("gateway").wait_ready()
    first = stack.add("presence", COLLAB_PRESENCE_CONSUMER="first", **lease)
    first.wait_ready()
    await owns(first, 2)
    ada, _ = await join(stack, "lease", "ada")
    lin, wl = await join(stack, "lease", "lin")
    assert (await next_of(ada, "join"))["participant"]["session"] == wl["session"]

    first.kill()
    killed = time.monotonic()
    second = stack.add("presence", COLLAB_PRESENCE_CONSUMER="second", **lease)
    second.wait_ready()
    await owns(second, 2)
    # Renewed every second, the lease lived at least two more seconds after the kill.
    assert time.monotonic() - killed >= 1.9
    kim, _ = await join(stack, "lease", "kim")
    assert (await next_of(ada, "join", timeout=10))["participant"]["user"]["id"] == "kim"
    await lin.close()
    assert (await next_of(ada, "leave", timeout=10))["session"] == wl["session"]

    # Frozen past its lease: another process takes over; woken, it yields.
    second.signal(signal.SIGSTOP)
    third = stack.add("presence", COLLAB_PRESENCE_CONSUMER="third", **lease)
    third.wait_ready()
    await owns(third, 2)
    second.signal(signal.SIGCONT)
    await owns(second, 0)
    await asyncio.sleep(1.5)
    assert shards_owned(second) == 0
    assert shards_owned(third) == 2
    sam, _ = await join(stack, "lease", "sam")
    assert (await next_of(ada, "join", timeout=10))["participant"]["user"]["id"] == "sam"
    for ws in (ada, kim, sam):
        await ws.close()
