"""Soak (research/reliability.md M21): mixed load on several documents with random faults.

``COLLAB_SOAK_SECONDS`` sets the length (default 120, what CI runs; 600 for the 10-minute
run, longer for a nightly one). Two gateways and two edit-transform replicas; gateway 0
is never killed, so that its memory can be compared over the run. After a warm-up round
whose clients all leave, its RSS, open file descriptors, connections and rooms are the
baseline. Then fresh clients edit three documents while faults hit every 6-12 s: kill -9
of an edit-transform replica, of gateway 1 or of presence (each restarted a moment later),
Redis frozen for 2 s, Redis killed and restarted on its AOF, dropped client connections.
At the end the oracle holds on every document, and once the clients have left the
gateways are back to zero connections and rooms, gateway 0's memory and descriptors are
back near the baseline, presence lists nobody, and no ingress entry is left pending.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import httpx
import pytest
import redis
import websockets
from tests.integration.chaos import metric, rss_kib

from collab_core import keys

SOAK_SECONDS = float(os.environ.get("COLLAB_SOAK_SECONDS", "120"))
DOCS = ["soak-a", "soak-b", "soak-c"]
#: Allowed RSS growth of gateway 0 over the baseline. Thousands of connections come and go
#: during the soak (the churn alone makes over 5 a second): leaking even a few KiB of
#: each, or a room per document, would exceed it.
RSS_SLACK_KIB = 16 * 1024


def gateway_gauges(gateway) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{gateway.port}/metrics", timeout=10).text
    return {
        "connections": metric(text, "collab_gateway_connections"),
        "rooms": metric(text, "collab_gateway_rooms"),
        "users": metric(text, "collab_gateway_users"),
        "fds": metric(text, "process_open_fds"),
    }


def presence_state(stack, doc: str) -> str:
    """What presence and Redis hold, for a failure message."""
    r = redis.Redis.from_url(stack.redis.url)
    try:
        roster = r.hgetall(keys.roster(doc))
        alive = r.keys("collab:gateway:*")
        rosters = r.smembers("collab:rosters")
    finally:
        r.close()
    presence = stack.of("presence")[0]
    text = httpx.get(f"http://127.0.0.1:{presence.port}/metrics", timeout=10).text
    tracked = metric(text, "collab_presence_participants")
    return f"roster {roster}; live gateways {alive}; rosters {rosters}; tracked {tracked}"


def complaints(services, last: int = 20) -> str:
    """The services' last warnings and errors, for a failure message."""
    lines = []
    for service in services:
        text = service.log_path.read_text(errors="replace")
        lines += [
            f"{service.name}: {line}"
            for line in text.splitlines()
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ][-last:]
    return "\n".join(lines)


async def until_idle(gateways, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        gauges = [gateway_gauges(g) for g in gateways]
        if all(g["connections"] == g["rooms"] == g["users"] == 0 for g in gauges):
            return
        assert time.monotonic() < deadline, f"not back to idle: {gauges}\n{complaints(gateways)}"
        await asyncio.sleep(0.2)


async def inject_faults(stack, runs, rng: random.Random, stop: asyncio.Event) -> list[str]:
    """Random faults until ``stop`` is set; returns what was done, in order. Redis is
    killed once, half-way through."""
    started = time.monotonic()
    done: list[str] = []
    transforms = stack.of("transform")
    victim_gateway = stack.of("gateway")[1]
    presence = stack.of("presence")[0]
    redis_killed = False
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(6, 12))
            break
        except TimeoutError:
            pass
        elapsed = time.monotonic() - started
        if not redis_killed and elapsed > SOAK_SECONDS / 2:
            redis_killed = True
            fault = "redis-kill"
        else:
            fault = rng.choice(
                ["transform-kill", "gateway-kill", "presence-kill", "redis-freeze", "drops"]
            )
        done.append(fault)
        if fault == "transform-kill":
            service = rng.choice(transforms)
            service.kill()
            await asyncio.sleep(rng.uniform(0.5, 2))
            service.start()
        elif fault == "gateway-kill":
            victim_gateway.kill()
            await asyncio.sleep(rng.uniform(0.5, 2))
            victim_gateway.start()
        elif fault == "presence-kill":
            presence.kill()
            await asyncio.sleep(0.5)
            presence.start()
        elif fault == "redis-freeze":
            stack.redis.pause()
            await asyncio.sleep(2)
            stack.redis.resume()
        elif fault == "redis-kill":
            stack.redis.kill()
            await asyncio.sleep(1)
            stack.redis.start()
        else:
            for run in runs:
                for client in rng.sample(run.clients, 2):
                    client.drop()
    return done


async def churn(stack, gateway, stop: asyncio.Event) -> int:
    """Short-lived connections on many documents: rooms open and close all the time."""
    token = stack.token("churn")
    count = 0
    while not stop.is_set():
        doc = f"churn-{count % 40}"
        try:
            async with websockets.connect(stack.ws_url(doc, gateway), open_timeout=5) as ws:
                await ws.send(json.dumps({"type": "hello", "token": token, "client": "churn"}))
                await asyncio.wait_for(ws.recv(), 5)
                count += 1
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.5)  # Redis down or frozen: the gateway refuses for now
        await asyncio.sleep(0.03)
    return count


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 300)
async def test_soak_mixed_load_with_random_faults_returns_to_baseline(fault_stack, chaos):
    stack = fault_stack()
    observed, victim = stack.of("gateway")
    pid = observed.process.pid
    rng = random.Random(2024)

    def clients_for(doc: str, round_: int):
        return chaos(stack, doc, clients=5, seed=hash((doc, round_)) % 1000, backoff_max=1.0)

    # Warm-up: every code path once, then everyone leaves; that is the baseline.
    warm = [clients_for(doc, 0) for doc in DOCS]
    await asyncio.gather(*(run.start() for run in warm))
    await asyncio.gather(*(run.load(min(15, SOAK_SECONDS / 8), pause=0.03) for run in warm))
    await asyncio.gather(*(run.settle() for run in warm))
    await asyncio.gather(*(run.close() for run in warm))
    await until_idle([observed, victim])
    baseline_rss = rss_kib(pid)
    baseline_fds = gateway_gauges(observed)["fds"]

    runs = [clients_for(doc, 1) for doc in DOCS]
    await asyncio.gather(*(run.start() for run in runs))
    started = time.monotonic()
    stop = asyncio.Event()
    faults = asyncio.create_task(inject_faults(stack, runs, rng, stop))
    churner = asyncio.create_task(churn(stack, observed, stop))
    try:
        remaining = SOAK_SECONDS - (time.monotonic() - started)
        await asyncio.gather(*(run.load(remaining, pause=0.03, drops=0.005) for run in runs))
    finally:
        stop.set()
        done = await faults
        churned = await churner
    for service in stack.services:
        if service.process.poll() is not None:
            service.start()
        service.wait_ready(30)
    documents = await asyncio.gather(*(run.settle(timeout=120) for run in runs))
    connections = sum(c.connections for run in runs for c in run.clients)
    await asyncio.gather(*(run.close() for run in runs))

    await until_idle([observed, victim])
    headers = {"Authorization": f"Bearer {stack.token()}"}
    deadline = time.monotonic() + 40  # sessions of a killed gateway leave by timeout (15 s)
    for doc in DOCS:
        url = f"{stack.http(observed)}/v1/documents/{doc}/participants"
        while httpx.get(url, headers=headers).json()["participants"]:
            assert time.monotonic() < deadline, (
                f"{doc}: participants left behind: " + presence_state(stack, doc)
            )
            await asyncio.sleep(0.5)
    r = redis.Redis.from_url(stack.redis.url)
    try:
        for shard in range(2):
            stream = keys.op_ingress(shard)
            assert r.xpending(stream, keys.TRANSFORM_GROUP)["pending"] == 0
            assert r.xlen(stream) == 0
    finally:
        r.close()
    end_rss = rss_kib(pid)
    end_fds = gateway_gauges(observed)["fds"]
    print(
        f"soak {SOAK_SECONDS:.0f}s: faults {done}; versions {[d['version'] for d in documents]}; "
        f"{connections} client connections, {churned} short ones; "
        f"gateway-0 RSS {baseline_rss} -> {end_rss} KiB, fds {baseline_fds:.0f} -> {end_fds:.0f}"
    )
    stops = {}
    for service in reversed(stack.services):
        begun = time.monotonic()
        service.stop()
        stops[service.name] = round(time.monotonic() - begun, 1)
    print("STOPS", stops)
    assert len(done) >= SOAK_SECONDS / 15
    assert all(d["version"] > 100 for d in documents)
    assert churned > SOAK_SECONDS * 2
    # The gateway's Redis pool grows up to 64 connections while Redis is frozen; a leak
    # per client connection would leave hundreds.
    assert end_fds <= baseline_fds + 64 + 20
    assert end_rss <= baseline_rss + RSS_SLACK_KIB
