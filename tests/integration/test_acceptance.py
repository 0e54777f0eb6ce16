"""The original brief's acceptance scenarios, against the real services."""

from __future__ import annotations

import asyncio
import json
import random
import time

import websockets

from collab_client.connection import CollabClient


async def test_connection_stays_open_30s_with_heartbeats_answered(stack) -> None:
    async with websockets.connect(stack.ws_url("long-lived")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": stack.token(), "client": "c1"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 30:
            stamp = time.time()
            await ws.send(json.dumps({"type": "heartbeat", "timestamp": stamp}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "heartbeat"
            assert reply["timestamp"] == stamp
            assert abs(reply["server_time"] - time.time()) < 5
            answered += 1
            await asyncio.sleep(5)
        assert answered >= 6
        # Still open: an op round-trips after half a minute.
        await ws.send(json.dumps({"type": "op", "id": "late", "v": 0, "op": ["still here"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
            "type": "ack",
            "id": "late",
            "v": 0,
        }


async def test_two_clients_see_each_others_edits_under_200ms(stack) -> None:
    url = stack.ws_url("pair")
    async with (
        CollabClient(url, stack.token("ada")) as ada,
        CollabClient(url, stack.token("lin")) as lin,
    ):
        await ada.synced()
        await lin.synced()
        latencies = []
        for i in range(20):
            writer, reader = (ada, lin) if i % 2 == 0 else (lin, ada)
            target = (writer.version or 0) + 1
            started = time.perf_counter()
            writer.insert(len(writer.text), f"{i}😀 ")
            await reader.reaches(target, timeout=2)
            latencies.append(time.perf_counter() - started)
            await writer.synced()
        assert ada.text == lin.text == "".join(f"{i}😀 " for i in range(20))
        # Under 200 ms for 19 of 20 edits; on a CI machine shared by every process of
        # the stack one may meet a stall (bench.load measures the percentiles).
        assert sorted(latencies)[18] < 0.2, latencies
        assert max(latencies) < 1.0, latencies


async def test_hundred_clients_in_one_room_all_receive_and_converge(stack) -> None:
    url = stack.ws_url("crowd")
    clients = [CollabClient(url, stack.token(f"user{i}")) for i in range(100)]
    for client in clients:
        client.start()
    try:
        await asyncio.gather(*(c.synced(timeout=30) for c in clients))
        rng = random.Random(3)
        writers = rng.sample(clients, 20)
        for n, writer in enumerate(writers):
            writer.insert(rng.randint(0, len(writer.text)), f"<{n}>")
        await asyncio.gather(*(w.synced(timeout=30) for w in writers))
        final = stack.document("crowd")
        await asyncio.gather(*(c.reaches(final["version"], timeout=30) for c in clients))
        texts = {c.text for c in clients}
        assert texts == {final["text"]}
        assert final["version"] == 20
        for n in range(20):
            assert f"<{n}>" in final["text"]
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_client_dropped_mid_editing_resumes_and_nothing_applies_twice(stack) -> None:
    url = stack.ws_url("dropped")
    async with (
        CollabClient(url, stack.token("ada")) as ada,
        CollabClient(url, stack.token("lin")) as lin,
    ):
        await ada.synced()
        await lin.synced()
        for i in range(30):
            ada.insert(len(ada.text), f"a{i} ")
            if i % 7 == 3:
                ada.drop()  # pending ops in flight and buffered
            lin.insert(0, f"l{i} ")
            await asyncio.sleep(0.01)
        await ada.synced(timeout=20)
        await lin.synced(timeout=20)
        final = stack.document("dropped")
        await ada.reaches(final["version"])
        await lin.reaches(final["version"])
        assert ada.text == lin.text == final["text"]
        assert ada.connections > 1
        for i in range(30):
            assert final["text"].count(f"a{i} ") == 1
            assert final["text"].count(f"l{i} ") == 1
        ids = [(op["client"], op["id"]) for op in stack.history("dropped")]
        assert len(ids) == len(set(ids))
