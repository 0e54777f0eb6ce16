"""Presence: join, cursors, leave, and timeouts when a gateway dies."""

from __future__ import annotations

import asyncio
import json
import time

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


def start_partitions(stack, partitions: int, shards: int) -> list:
    """Presence as the chart runs it: pod n of a StatefulSet is partition n, named after it."""
    started = [
        stack.add(
            "presence",
            COLLAB_INGRESS_SHARDS=str(shards),
            COLLAB_PRESENCE_PARTITIONS=str(partitions),
            COLLAB_PRESENCE_PARTITION=str(n),
            COLLAB_PRESENCE_CONSUMER=f"presence-{n}",
        )
        for n in range(partitions)
    ]
    for service in started:
        service.wait_ready()
    return started


async def test_partitions_resplit_restore_rosters_and_adopt_unacknowledged_updates(
    stack_factory,
) -> None:
    """Three presence partitions, then two (a StatefulSet scaled down): every document's
    roster survives in its new owner, and a join read by the removed partition but never
    acknowledged still reaches the room."""
    shards = 6
    stack = stack_factory(start=False)
    stack.add("transform", COLLAB_INGRESS_SHARDS=str(shards))
    gateway = stack.add("gateway", COLLAB_INGRESS_SHARDS=str(shards))
    gateway.wait_ready()
    old = start_partitions(stack, 3, shards)
    docs = docs_per_shard(shards)
    watchers = {}
    leavers = {}
    for doc in docs:
        watchers[doc], _ = await join(stack, doc, "ada")
        leavers[doc], welcome = await join(stack, doc, "lin")
        leavers[doc].welcome = welcome
        joined = await next_of(watchers[doc], "join")
        assert joined["participant"]["user"]["id"] == "lin", doc

    for service in old:
        service.stop()
    # Joins while no partition runs wait in the ingress; one shard's are read by the
    # partition that is going away, which dies before acknowledging them.
    newcomers = {}
    for doc in docs:
        newcomers[doc], _ = await join(stack, doc, "kim")
    gone = redis.Redis.from_url(stack.redis.url)
    try:
        orphaned = keys.presence_ingress(keys.shard_of(docs[2], shards))
        read = gone.xreadgroup(keys.PRESENCE_GROUP, "presence-2", {orphaned: ">"})
        assert read, "the join of kim should be waiting in its shard"
        assert read[0][1]
    finally:
        gone.close()

    start_partitions(stack, 2, shards)
    for doc in docs:
        joined = await next_of(watchers[doc], "join", timeout=10)
        assert joined["participant"]["user"]["id"] == "kim", doc
        # The roster the new owner restored: a late joiner sees everyone else.
        late, welcome = await join(stack, doc, "sam")
        users = sorted(p["user"]["id"] for p in welcome["participants"])
        assert users == ["ada", "kim", "lin"], doc
        await late.close()
        # A leave of a session the removed partitions had tracked reaches the room.
        await leavers[doc].close()
        while True:
            left = await next_of(watchers[doc], "leave", timeout=10)
            if left["session"] == leavers[doc].welcome["session"]:
                break
    # Nothing is left pending on the consumer of the removed partition.
    check = redis.Redis.from_url(stack.redis.url)
    try:
        for shard in range(shards):
            pending = check.xpending(keys.presence_ingress(shard), keys.PRESENCE_GROUP)
            holders = {c["name"].decode() for c in pending["consumers"]}
            assert "presence-2" not in holders, shard
    finally:
        check.close()
    for doc in docs:
        await watchers[doc].close()
        await newcomers[doc].close()
