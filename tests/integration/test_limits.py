"""Limits and security checks of the gateway, over real connections."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab_client.connection import CollabClient


async def read_until_closed(ws) -> tuple[int, list[dict]]:
    frames: list[dict] = []

    async def loop() -> None:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))

    with pytest.raises(ConnectionClosed) as closed:
        await loop()
    rcvd = closed.value.rcvd
    return (rcvd.code if rcvd else 1006), frames


async def test_origin_not_on_the_allowlist_is_refused(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_ALLOWED_ORIGINS='["https://editor.example"]')
    url = stack.ws_url("origins")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    for origin in ("https://editor.example", None):
        async with websockets.connect(url, origin=origin) as ws:
            await ws.send(json.dumps({"type": "hello", "token": stack.token(), "client": "c"}))
            assert json.loads(await ws.recv())["type"] == "welcome"


async def test_connections_per_user_are_capped(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_CONNECTIONS_PER_USER="2")
    token = stack.token("ada")
    open_ones = []
    for i in range(2):
        ws = await websockets.connect(stack.ws_url("cap"))
        await ws.send(json.dumps({"type": "hello", "token": token, "client": f"c{i}"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        open_ones.append(ws)
    third = await websockets.connect(stack.ws_url("cap"))
    await third.send(json.dumps({"type": "hello", "token": token, "client": "c3"}))
    code, frames = await read_until_closed(third)
    assert frames[-1]["code"] == "rate_limited"
    assert code == 4008
    await open_ones[0].close()
    # The slot is freed once the gateway has cleaned up the closed session.
    async with asyncio.timeout(15):
        while True:
            again = await websockets.connect(stack.ws_url("cap"))
            await again.send(json.dumps({"type": "hello", "token": token, "client": "c4"}))
            reply = json.loads(await again.recv())
            if reply["type"] == "welcome":
                break
            assert reply["code"] == "rate_limited"
            await again.close()
            await asyncio.sleep(0.1)
    for ws in [*open_ones, again]:
        await ws.close()


async def test_token_expiry_closes_the_connection(stack) -> None:
    ws = await websockets.connect(stack.ws_url("expiring"))
    await ws.send(json.dumps({"type": "hello", "token": stack.token(ttl=3), "client": "c"}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    started = time.monotonic()
    code, frames = await read_until_closed(ws)
    assert code == 4001
    assert frames[-1] == {"type": "error", "code": "unauthorized", "message": "token expired"}
    assert time.monotonic() - started < 6


async def test_slow_consumer_is_cut_off_and_the_room_goes_on(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_SEND_QUEUE_FRAMES="16")
    doc = "slow"
    slow = await websockets.connect(stack.ws_url(doc), max_queue=1)
    await slow.send(json.dumps({"type": "hello", "token": stack.token("slow"), "client": "s"}))
    assert json.loads(await slow.recv())["type"] == "welcome"
    async with CollabClient(stack.ws_url(doc), stack.token("fast")) as fast:
        await fast.synced()
        chunk = "x" * 60_000
        for _ in range(150):
            fast.insert(0, chunk)
            await fast.synced()
            fast.delete(0, len(chunk))
            await fast.synced()
        # The writer never waited on the slow reader.
        assert fast.text == ""
        code, frames = await read_until_closed(slow)
    assert code == 4009
    assert frames[-1]["code"] == "slow_consumer"
    expected = [
        "collab_gateway_slow_consumers_total 1.0",
        'collab_gateway_disconnects_total{reason="slow_consumer"} 1.0',
        'collab_gateway_errors_total{code="slow_consumer"} 1.0',
    ]
    # The disconnect is counted when the gateway's cleanup of the session ends.
    for _ in range(150):
        metrics = httpx.get(f"{stack.http()}/metrics").text
        if all(line in metrics for line in expected):
            break
        await asyncio.sleep(0.1)
    for line in expected:
        assert line in metrics


async def test_gateway_publishes_its_load(stack) -> None:
    import redis.asyncio as aioredis

    async with CollabClient(stack.ws_url("loaded"), stack.token()) as client:
        await client.synced()
        r = aioredis.Redis.from_url(stack.redis.url)
        try:
            report = None
            for _ in range(50):
                ids = await r.zrange("collab:gateways", 0, -1)
                if ids:
                    raw = await r.get(f"collab:gateway:{ids[0].decode()}")
                    report = json.loads(raw) if raw else None
                    if report and report["connections"] == 1:
                        break
                await asyncio.sleep(0.1)
            assert report is not None
            assert report["connections"] == 1
            assert report["rooms"] == 1
            assert report["largest_rooms"] == [{"doc": "loaded", "connections": 1}]
            assert await r.ttl(f"collab:gateway:{ids[0].decode()}") > 0
        finally:
            await r.aclose()


async def test_a_closed_connection_frees_its_slot_while_redis_is_frozen(stack_factory) -> None:
    """The gateway's own bookkeeping of a closing connection (its room, the user's
    connection slot, the close frame) does not wait on Redis; the presence leave does,
    and reaches the roster once Redis is back."""
    from tests.integration.chaos import metric

    from collab_core import keys

    stack = stack_factory(COLLAB_GATEWAY_CONNECTIONS_PER_USER="1")
    doc = "frozen-leave"
    ws = await websockets.connect(stack.ws_url(doc))
    await ws.send(json.dumps({"type": "hello", "token": stack.token("ada"), "client": "c"}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    session = welcome["session"]

    def gauges() -> tuple[float, float, float]:
        text = httpx.get(f"{stack.http()}/metrics", timeout=5).text
        return tuple(  # type: ignore[return-value]
            metric(text, f"collab_gateway_{name}") for name in ("connections", "rooms", "users")
        )

    r = redis.Redis.from_url(stack.redis.url)
    try:
        for _ in range(100):
            if r.hexists(keys.roster(doc), session):
                break
            await asyncio.sleep(0.1)
        assert r.hexists(keys.roster(doc), session)
        assert gauges() == (1, 1, 1)
        stack.redis.pause()
        try:
            async with asyncio.timeout(3):
                await ws.close()
            # Redis answers nothing for 4 s; the slot is free well before that.
            freed = None
            for _ in range(30):
                freed = gauges()
                if freed == (0, 0, 0):
                    break
                await asyncio.sleep(0.1)
            assert freed == (0, 0, 0), f"connections, rooms, users while Redis is frozen: {freed}"
        finally:
            stack.redis.resume()
        for _ in range(150):
            if not r.hexists(keys.roster(doc), session):
                break
            await asyncio.sleep(0.1)
        assert not r.hexists(keys.roster(doc), session), "the leave never reached presence"
    finally:
        r.close()
