"""Faults: processes killed mid-load, a drained gateway, Redis killed and restarted on its AOF.

Every test ends by checking the invariants: all clients converge on the server's text,
every ack a client received names its op in the history, and no op was applied twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from collab_client.connection import CollabClient


async def start_clients(stack, doc: str, n: int, gateways=None) -> list[CollabClient]:
    gateways = gateways or stack.of("gateway")
    clients = [
        CollabClient(
            [stack.ws_url(doc, gateways[(i + k) % len(gateways)]) for k in range(len(gateways))],
            stack.token(f"u{i}"),
            backoff_max=0.5,
        )
        for i in range(n)
    ]
    for client in clients:
        client.start()
    await asyncio.gather(*(c.synced(timeout=20) for c in clients))
    return clients


async def load(clients, edit, rng: random.Random, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client = rng.choice(clients)
        if client.connected:
            edit(client, rng)
        await asyncio.sleep(0.005)


async def settle(stack, doc: str, clients, check_acks, timeout: float = 60) -> dict:
    await asyncio.gather(*(c.synced(timeout=timeout) for c in clients))
    final = stack.document(doc)
    await asyncio.gather(*(c.reaches(final["version"], timeout=timeout) for c in clients))
    assert {c.text for c in clients} == {final["text"]}
    check_acks(clients, stack.history(doc))
    return final


async def test_edit_transform_killed_mid_load(stack_factory, edit, check_acks) -> None:
    stack = stack_factory(transforms=2)
    clients = await start_clients(stack, "kill-transform", 6)
    rng = random.Random(1)
    try:
        first, second = stack.of("transform")
        await load(clients, edit, rng, 1.0)
        first.kill()
        await load(clients, edit, rng, 1.5)
        first.start()
        second.kill()
        await load(clients, edit, rng, 1.0)
        second.start()
        final = await settle(stack, "kill-transform", clients, check_acks)
        assert final["version"] > 50
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_only_edit_transform_killed_and_restarted(stack, edit, check_acks) -> None:
    clients = await start_clients(stack, "restart-transform", 4)
    rng = random.Random(2)
    try:
        await load(clients, edit, rng, 1.0)
        stack.of("transform")[0].kill()
        await load(clients, edit, rng, 0.5)  # ops queue up in the ingress stream
        stack.of("transform")[0].start()
        await settle(stack, "restart-transform", clients, check_acks)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_gateway_killed_clients_resume_on_the_other(stack_factory, edit, check_acks):
    stack = stack_factory(gateways=2)
    clients = await start_clients(stack, "kill-gateway", 6)
    rng = random.Random(3)
    try:
        await load(clients, edit, rng, 1.0)
        stack.of("gateway")[0].kill()
        await load(clients, edit, rng, 1.5)
        final = await settle(stack, "kill-gateway", clients, check_acks)
        assert all(c.connections >= 1 for c in clients)
        assert sum(c.connections for c in clients) > len(clients)
        assert final["version"] > 30
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_presence_killed_editing_goes_on(stack, edit, check_acks) -> None:
    clients = await start_clients(stack, "kill-presence", 3)
    rng = random.Random(4)
    try:
        presence = stack.of("presence")[0]
        presence.kill()
        await load(clients, edit, rng, 1.0)
        presence.start()
        presence.wait_ready()
        await load(clients, edit, rng, 0.5)
        await settle(stack, "kill-presence", clients, check_acks)
        # The restarted presence still knows the roster.
        response = httpx.get(
            f"{stack.http()}/v1/documents/kill-presence/participants",
            headers={"Authorization": f"Bearer {stack.token()}"},
        )
        assert len(response.json()["participants"]) == 3
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_redis_killed_and_restarted_on_its_aof_loses_no_acked_op(
    stack, edit, check_acks
) -> None:
    clients = await start_clients(stack, "kill-redis", 5)
    rng = random.Random(5)
    try:
        await load(clients, edit, rng, 1.0)
        acked_before = sum(len(c.acks) for c in clients)
        stack.redis.kill()
        await load(clients, edit, rng, 0.5)  # edits pile up locally
        stack.redis.start()
        await load(clients, edit, rng, 1.0)
        final = await settle(stack, "kill-redis", clients, check_acks, timeout=90)
        assert acked_before > 0
        assert final["version"] >= acked_before
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_redis_restarted_empty_is_refused_not_served_from_version_zero(stack) -> None:
    async with CollabClient(stack.ws_url("precious"), stack.token()) as client:
        await client.synced()
        client.insert(0, "do not lose me")
        await client.synced()
    stack.redis.kill()
    for path in stack.redis.data_dir.iterdir():
        if path.is_file():
            path.unlink()
        else:
            for inner in path.iterdir():
                inner.unlink()
    stack.redis.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(f"{stack.http()}/readyz").json().get("reason") == "store lost":
            break
        await asyncio.sleep(0.2)
    assert httpx.get(f"{stack.http()}/readyz").json()["reason"] == "store lost"
    for service in stack.of("transform") + stack.of("presence"):
        assert httpx.get(f"http://127.0.0.1:{service.port}/readyz").status_code == 503

    async def say_hello() -> None:
        async with websockets.connect(stack.ws_url("precious")) as ws:
            await ws.send(json.dumps({"type": "hello", "token": stack.token(), "client": "c"}))
            await asyncio.wait_for(ws.recv(), 5)

    with pytest.raises(ConnectionClosed) as closed:
        await say_hello()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013


async def test_drain_sends_reconnect_and_1012_and_clients_resume(stack_factory, check_acks):
    stack = stack_factory(gateways=2)
    draining, other = stack.of("gateway")
    raw = await websockets.connect(stack.ws_url("drain", draining))
    await raw.send(json.dumps({"type": "hello", "token": stack.token(), "client": "raw"}))
    assert json.loads(await raw.recv())["type"] == "welcome"
    clients = await start_clients(stack, "drain", 4, [draining, other])
    try:
        for i, client in enumerate(clients):
            client.insert(0, f"<{i}>")
        draining.signal(signal.SIGTERM)
        frames = []

        async def read_until_closed() -> None:
            while True:
                frames.append(json.loads(await asyncio.wait_for(raw.recv(), 10)))

        with pytest.raises(ConnectionClosed) as closed:
            await read_until_closed()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
        reconnect = [f for f in frames if f["type"] == "reconnect"]
        assert len(reconnect) == 1
        assert reconnect[0]["retry_after_ms"] > 0
        assert draining.process.wait(30) is not None
        for i, client in enumerate(clients):
            client.insert(0, f"[{i}]")
        final = await settle(stack, "drain", clients, check_acks)
        for i in range(4):
            assert f"<{i}>" in final["text"]
            assert f"[{i}]" in final["text"]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
