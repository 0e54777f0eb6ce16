"""The fault matrix (research/reliability.md section 2; docs/reliability.md maps every row).

Each test runs the real stack, by default two gateways and two edit-transform replicas
(``fault_stack``), drives recording clients (``chaos``), injects one fault and ends with
the oracle of tests/integration/chaos.py: every acked op is in the history exactly once,
every client's text is the server's, each connection saw versions in order without gaps,
and every op a client sent was committed or refused with an error.

Faults inside edit-transform use its test hook ``COLLAB_TRANSFORM_FAULT`` (crash with
``os._exit(137)``, or SIGSTOP itself, the n-th time it reaches a point); network faults
use :class:`~tests.integration.chaos.FaultProxy`. The faults of ``test_faults.py``
(kill -9 of a transform, a gateway, presence or Redis mid-load, Redis restarted empty,
drain) are not repeated here.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from tests.integration.chaos import metric, process_state

from collab_client.connection import CollabClient
from collab_core import keys
from collab_core.ingress import Submission

POINTS = ["after_read", "before_commit", "after_commit", "before_ack"]


def metrics_of(service) -> str:
    return httpx.get(f"http://127.0.0.1:{service.port}/metrics", timeout=10).text


def ingress_ids(stack) -> set[tuple[str, str]]:
    """``(client, id)`` of every op waiting in the op ingress streams."""
    r = redis.Redis.from_url(stack.redis.url)
    try:
        found = set()
        for shard in range(2):
            for _, fields in r.xrange(keys.op_ingress(shard)):
                found.add((fields[b"client"].decode(), fields[b"id"].decode()))
        return found
    finally:
        r.close()


def log_ids(stack, doc: str) -> set[tuple[str, str]]:
    r = redis.Redis.from_url(stack.redis.url)
    try:
        rows = r.xrange(keys.log(doc))
        return {(f[b"client"].decode(), f[b"id"].decode()) for _, f in rows}
    finally:
        r.close()


async def eventually(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def libfaketime() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    assert found, "libfaketime.so.1 not found (Debian: apt-get install faketime)"
    return str(found[0])


def exited(service) -> bool:
    return service.process.poll() is not None


def stopped(service) -> bool:
    return process_state(service.process.pid) == "T"


# -- edit-transform: crashes at each point (M1, M2) ----------------------------------------


@pytest.mark.parametrize("point", POINTS)
async def test_transform_crash_is_taken_over_by_the_other_replica(fault_stack, chaos, point):
    """M1/M2: the dead replica's pending entries are claimed (XAUTOCLAIM) and committed once;
    after a commit that was never acknowledged to the stream, the claim finds a duplicate."""
    stack = fault_stack(transforms=({"COLLAB_TRANSFORM_FAULT": f"crash_{point}:5"}, {}))
    crashing, survivor = stack.of("transform")
    async with chaos(stack, f"crash-{point}", seed=len(point)) as run:
        await run.until(lambda: exited(crashing), timeout=30)
        await run.load(2.5)  # past the 1.5 s claim idle time
        await run.settle()
    assert crashing.process.returncode == 137
    # After a commit the clients' acks may come from the broadcast before the claim
    # loop's next pass (1.5 s idle, then up to one claim interval).
    await eventually(lambda: metric(metrics_of(survivor), "collab_transform_claimed_total") >= 1)
    if point in ("after_commit", "before_ack"):
        await eventually(
            lambda: metric(metrics_of(survivor), "collab_transform_duplicates_total") >= 1
        )


@pytest.mark.parametrize("point", ["after_read", "after_commit"])
async def test_transform_crash_restarted_finishes_its_own_pending_entries(
    fault_stack, chaos, point
):
    """M1/M2 with one replica: restarted under the same consumer name, it re-reads its own
    pending entries (XREADGROUP from id 0) before new ones."""
    stack = fault_stack(transforms=({"COLLAB_TRANSFORM_FAULT": f"crash_{point}:3"},))
    transform = stack.of("transform")[0]
    async with chaos(stack, f"restart-{point}", clients=4) as run:
        await run.until(lambda: exited(transform), timeout=30)
        transform.env.pop("COLLAB_TRANSFORM_FAULT")
        transform.start()
        transform.wait_ready()
        await run.load(1.0)
        await run.settle()


# -- edit-transform: a poison op (M17) ------------------------------------------------------


class Author:
    """A raw WebSocket to one document that sends ops and waits for their answers."""

    def __init__(self, stack, doc: str, client: str) -> None:
        self.stack, self.doc, self.client = stack, doc, client
        self.version = 0

    async def __aenter__(self) -> Author:
        self._ws = await websockets.connect(self.stack.ws_url(self.doc))
        await self._ws.send(
            json.dumps(
                {"type": "hello", "token": self.stack.token(self.client), "client": self.client}
            )
        )
        welcome = json.loads(await self._ws.recv())
        self.version = welcome["version"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()

    async def send(self, op_id: str, text: str) -> None:
        message = {"type": "op", "id": op_id, "v": self.version, "op": [text]}
        await self._ws.send(json.dumps(message))

    async def answer(self, op_id: str, timeout: float) -> dict:
        """The ack or error naming ``op_id``; others' ops move the version on."""
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self._ws.recv())
                if message["type"] == "op":
                    self.version = message["v"] + 1
                elif message["type"] in ("ack", "error") and message.get("id") == op_id:
                    if message["type"] == "ack":
                        self.version = message["v"] + 1
                    return message


def dead_letters(stack) -> list[dict[bytes, bytes]]:
    r = redis.Redis.from_url(stack.redis.url)
    try:
        return [f for shard in range(2) for _, f in r.xrange(keys.op_dead_letter(shard))]
    finally:
        r.close()


async def test_poison_op_that_raises_is_dead_lettered_and_the_document_goes_on(fault_stack):
    """M17: processing one op raises in every replica. The worker survives, the ops behind
    it commit, and after 5 deliveries the entry is set aside and its author told."""
    hook = {"COLLAB_TRANSFORM_FAULT": "raise_on_id:poison"}
    stack = fault_stack(transforms=(hook, hook))
    doc = "poison-raise"
    async with Author(stack, doc, "victim") as victim, Author(stack, doc, "other") as other:
        await victim.send("poison", "P")
        await asyncio.sleep(0.3)
        for n in range(3):
            await other.send(f"ok{n}", f"{n}")
            assert (await other.answer(f"ok{n}", timeout=10))["type"] == "ack"
        refused = await victim.answer("poison", timeout=60)
        assert (refused["type"], refused["code"]) == ("error", "internal")
        await victim.send("after", "A")
        assert (await victim.answer("after", timeout=10))["type"] == "ack"
    assert stack.document(doc) == {"id": doc, "version": 4, "text": "A210"}
    [entry] = dead_letters(stack)
    assert (entry[b"id"], entry[b"client"], entry[b"doc"]) == (b"poison", b"victim", doc.encode())
    assert all(t.process.poll() is None for t in stack.of("transform"))
    texts = [metrics_of(t) for t in stack.of("transform")]
    assert sum(metric(t, "collab_transform_failed_total") for t in texts) == 5
    assert sum(metric(t, "collab_transform_dead_lettered_total") for t in texts) == 1
    assert ("victim", "poison") not in ingress_ids(stack)


async def test_poison_op_that_crashes_the_worker_ends_the_crash_loop(fault_stack):
    """M17: the op ends the process every time it is read. Restarted (as Kubernetes would),
    the replica re-reads its pending entry, and after 5 deliveries dead-letters it instead
    of crashing again; ops queued behind it then commit."""
    stack = fault_stack(transforms=({"COLLAB_TRANSFORM_FAULT": "crash_on_id:poison"},))
    transform = stack.of("transform")[0]
    doc = "poison-crash"
    crashes = 0
    async with Author(stack, doc, "victim") as victim, Author(stack, doc, "other") as other:
        await victim.send("poison", "P")
        await eventually(lambda: exited(transform))
        await other.send("queued", "Q")
        answer = asyncio.ensure_future(victim.answer("poison", timeout=90))
        while not answer.done():
            if exited(transform):
                assert transform.process.returncode == 137
                crashes += 1
                transform.start()
            await asyncio.sleep(0.1)
        refused = answer.result()
        assert (refused["type"], refused["code"]) == ("error", "internal")
        assert (await other.answer("queued", timeout=10))["type"] == "ack"
    assert crashes == 5
    transform.wait_ready()
    assert stack.document(doc) == {"id": doc, "version": 1, "text": "Q"}
    assert [e[b"id"] for e in dead_letters(stack)] == [b"poison"]
    assert metric(metrics_of(transform), "collab_transform_dead_lettered_total") == 1


# -- edit-transform: a paused worker wakes up after a takeover (M5) ------------------------


@pytest.mark.parametrize("point", ["after_read", "before_commit", "after_commit"])
async def test_paused_transform_wakes_after_its_entries_were_claimed(fault_stack, chaos, point):
    """M5: SIGSTOP mid-op, the other replica claims and commits everything, SIGCONT: the
    zombie's check-and-append fails on the version, it finds the op committed, no fork."""
    stack = fault_stack(transforms=({"COLLAB_TRANSFORM_FAULT": f"stop_{point}:5"}, {}))
    paused, other = stack.of("transform")
    async with chaos(stack, f"zombie-{point}", seed=7) as run:
        await run.until(lambda: stopped(paused), timeout=30)
        await run.load(2.5)
        # Everything, the paused worker's entries included, commits without it.
        await run.settle()
        assert stopped(paused)
        paused.signal(signal.SIGCONT)
        await run.load(2.0)
        await run.settle()
    assert paused.process.poll() is None
    assert metric(metrics_of(other), "collab_transform_claimed_total") >= 1
    woken = metrics_of(paused)
    if point == "before_commit":
        assert metric(woken, "collab_transform_version_conflicts_total") >= 1
    if point != "after_commit":
        assert metric(woken, "collab_transform_duplicates_total") >= 1
    else:
        assert metric(metrics_of(other), "collab_transform_duplicates_total") >= 1


# -- tokens and clocks (M19) ---------------------------------------------------------------


async def test_expiring_tokens_are_renewed_and_no_pending_op_is_lost(fault_stack, chaos):
    """M19: tokens live 2-3 s and a token function mints one per connection. At each
    expiry the gateway closes with 4001, ops maybe in flight; the client reconnects with a
    fresh token and resends, and the oracle holds."""
    stack = fault_stack()
    minted: Counter[int] = Counter()

    def tokens(i: int):
        def fresh() -> str:
            minted[i] += 1
            return stack.token(f"u{i}", ttl=3)

        return fresh

    async with chaos(stack, "renewed", clients=4, tokens=tokens) as run:
        await run.load(8.0)
        await run.settle()
    for i, client in enumerate(run.clients):
        assert client.failure is None
        assert client.connections >= 3, "expected at least two expiries per client"
        assert minted[i] == client.connections


async def test_a_token_function_that_gives_expired_tokens_stops_the_client(stack):
    """A 4001 before any welcome is final even with a token function: no retry loop."""
    calls = 0

    def expired() -> str:
        nonlocal calls
        calls += 1
        return stack.token(ttl=-10)

    client = CollabClient(stack.ws_url("never"), expired, backoff_initial=0.05)
    client.start()
    try:
        await eventually(lambda: client.failure is not None, timeout=10)
    finally:
        await client.close()
    assert client.failure.code == 4001
    assert calls == 1


async def test_clock_skew_between_gateways_is_judged_by_each_gateways_clock(stack_factory, tool):
    """M19 with real clock skew: two gateways run 60 s ahead under libfaketime. A token
    with 30 s left is expired there (4001 on the socket, 401 on the HTTP API) unless the
    gateway allows the skew with COLLAB_JWT_LEEWAY_SECONDS; a skewed gateway still serves
    and commits edits normally."""
    tool("faketime")  # the package that ships libfaketime
    # libfaketime preloaded directly (the faketime command would fork and outlive a stop):
    # the wall clock runs 60 s ahead, the event loop's monotonic timers do not move.
    ahead = {"LD_PRELOAD": libfaketime(), "FAKETIME": "+60", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    stack = stack_factory(start=False)
    stack.add("transform")
    stack.add("presence")
    on_time = stack.add("gateway")
    strict = stack.add("gateway", **ahead)
    tolerant = stack.add("gateway", **ahead, COLLAB_JWT_LEEWAY_SECONDS="120")
    for service in stack.services:
        service.wait_ready()
    token = stack.token("u1", ttl=30)
    doc = "skewed"
    answers = {}
    for name, gateway in (("on_time", on_time), ("strict", strict), ("tolerant", tolerant)):
        async with websockets.connect(stack.ws_url(doc, gateway)) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token, "client": name}))
            first = json.loads(await ws.recv())
            answers[name] = first
            if first["type"] == "welcome":
                op = {"type": "op", "id": name, "v": first["version"], "op": [name[0]]}
                await ws.send(json.dumps(op))
                assert json.loads(await ws.recv())["type"] == "ack"
            else:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 4001
    assert answers["strict"] == {
        "type": "error",
        "code": "unauthorized",
        "message": "token expired",
    }
    assert answers["on_time"]["type"] == answers["tolerant"]["type"] == "welcome"
    headers = {"Authorization": f"Bearer {token}"}
    for gateway, status in ((on_time, 200), (strict, 401), (tolerant, 200)):
        url = f"{stack.http(gateway)}/v1/documents/{doc}"
        assert httpx.get(url, headers=headers, timeout=10).status_code == status
    assert stack.document(doc)["text"] == "to"


# -- gateway killed before and after forwarding (M3, M4) -----------------------------------


async def test_gateway_killed_before_forwarding_the_op_is_resent_once(fault_stack, chaos):
    """M4: a frozen gateway never forwarded the op; after its kill -9 the client resends it
    to the other gateway with the same id, and it commits once."""
    stack = fault_stack()
    a, b = stack.of("gateway")
    doc = "gw-before"
    urls = [stack.ws_url(doc, a), stack.ws_url(doc, b)]
    async with chaos(stack, doc, clients=1, urls=lambda i: urls) as run:
        client = run.clients[0]
        client.insert(0, "base ")
        await client.synced()
        a.signal(signal.SIGSTOP)
        client.insert(0, "never forwarded ")
        op_id = client.sent[-1]["id"]
        await asyncio.sleep(0.3)
        assert (client.client_id, op_id) not in ingress_ids(stack)
        a.kill()
        await run.settle()
    assert [m["id"] for m in client.sent].count(op_id) == 2
    history = stack.history(doc)
    assert [e["id"] for e in history if e["client"] == client.client_id].count(op_id) == 1
    assert stack.document(doc)["text"] == "never forwarded base "


async def test_gateway_killed_after_forwarding_the_client_resumes_without_resending(
    fault_stack, chaos
):
    """M3: the op reached the ingress stream, then the gateway died before any ack. The
    client resumes on the other gateway with ``since``; the welcome's ops carry its own op,
    which it takes as acknowledged and does not send again. Then two reconnects in a row."""
    stack = fault_stack()
    a, b = stack.of("gateway")
    transforms = stack.of("transform")
    doc = "gw-after"
    urls = [stack.ws_url(doc, a), stack.ws_url(doc, b)]
    async with chaos(stack, doc, clients=1, urls=lambda i: urls) as run:
        client = run.clients[0]
        client.insert(0, "base")
        await client.synced()
        for transform in transforms:
            transform.signal(signal.SIGSTOP)
        client.insert(4, " forwarded")
        op_id = client.sent[-1]["id"]
        await eventually(lambda: (client.client_id, op_id) in ingress_ids(stack))
        b.signal(signal.SIGSTOP)  # the reconnect waits in b's accept queue
        a.kill()
        for transform in transforms:
            transform.signal(signal.SIGCONT)
        await eventually(lambda: (client.client_id, op_id) in log_ids(stack, doc))
        b.signal(signal.SIGCONT)
        await client.synced(timeout=20)
        resumed = client.welcomes()[-1]
        assert op_id in [op["id"] for op in resumed.get("ops", [])]
        assert [m["id"] for m in client.sent].count(op_id) == 1
        # Two drops in a row with an op pending (FluidFramework#5808).
        client.insert(0, "twice ")
        client.drop()
        await client.connected_and_welcomed()
        client.drop()
        await run.settle()
    assert stack.document(doc)["text"] == "twice base forwarded"


# -- Redis faults (M8, M9, M11, M12) -------------------------------------------------------


@pytest.mark.parametrize("seconds", [3, 12])
async def test_redis_frozen_then_resumed(fault_stack, chaos, seconds):
    """M11: SIGSTOP Redis below and beyond the services' 10 s socket timeout. No ack while
    it is frozen; afterwards every service is ready again, ops sent meanwhile commit once
    (a forward that timed out may still have landed: its resend is a duplicate)."""
    stack = fault_stack()
    async with chaos(stack, f"frozen-{seconds}", seed=seconds) as run:
        await run.load(1.0)
        stack.redis.pause()
        try:
            await run.load(0.5)
            acked = run.acked
            await run.load(seconds - 0.5)
            assert run.acked == acked, "acknowledged while Redis was frozen"
        finally:
            stack.redis.resume()
        await run.load(1.0)
        await run.settle(timeout=90)
        assert run.acked > acked
    for service in stack.services:
        service.wait_ready()


async def test_redis_shut_down_and_restarted(fault_stack, chaos):
    """M8: a graceful SHUTDOWN (SIGTERM) and restart on the same AOF."""
    stack = fault_stack()
    async with chaos(stack, "redis-restart") as run:
        await run.load(1.0)
        stack.redis.stop()
        await run.load(0.5)
        stack.redis.start()
        await run.load(1.0)
        await run.settle(timeout=90)


async def test_torn_aof_tail_is_dropped_and_no_acked_op_is_lost(fault_stack, chaos):
    """M9: kill -9, then half a command appended to the AOF (a write torn by the crash).
    Redis loads the file without the torn tail (aof-load-truncated); under appendfsync
    always a torn write was never acknowledged, so the ledger is intact."""
    stack = fault_stack()
    async with chaos(stack, "torn-aof") as run:
        await run.load(1.0)
        stack.redis.kill()
        files = sorted(stack.redis.data_dir.glob("**/collab.aof*"), key=lambda p: p.stat().st_mtime)
        assert files, "no AOF file"
        with files[-1].open("ab") as aof:
            aof.write(b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$10\r\nhalf")
        stack.redis.start()
        await run.load(1.0)
        await run.settle(timeout=90)
    assert "truncated" in (stack.redis.data_dir / "redis.log").read_text().lower()


async def test_redis_refusing_writes_then_accepting_them_again(fault_stack, chaos):
    """M10 as far as it goes without a disk fault injector: for 3 s Redis refuses every
    write with an error reply (NOREPLICAS here; a failed AOF write gives MISCONF, the same
    kind of reply). Nothing is acknowledged meanwhile, nothing is committed half-way, and
    every service carries on once writes are accepted again."""
    stack = fault_stack()
    r = redis.Redis.from_url(stack.redis.url)
    try:
        async with chaos(stack, "refusing-writes") as run:
            await run.load(1.0)
            r.config_set("min-replicas-to-write", 1)
            try:
                await run.load(0.5)
                acked = run.acked
                await run.load(2.5)
                assert run.acked == acked, "acknowledged while Redis refused writes"
            finally:
                r.config_set("min-replicas-to-write", 0)
            await run.load(1.5)
            await run.settle(timeout=90)
            assert run.acked > acked
    finally:
        r.close()
    for service in stack.services:
        service.wait_ready()


async def test_disk_fsync_failure_stops_redis_before_it_acknowledges(fault_stack, chaos, tool):
    """M10 with a real disk fault: libfiu (``fiu-run``) makes every fsync of redis-server
    fail mid-load. Under ``appendfsync always`` Redis exits rather than reply to a write it
    could not persist; restarted on the same AOF, no acknowledged op is missing, and the
    ops in flight at the fault are resent and committed once."""
    fiu_run, fiu_ctrl = tool("fiu-run"), tool("fiu-ctrl")
    stack = fault_stack()
    server = stack.redis
    plain = server.command
    async with chaos(stack, "disk-fault") as run:
        await run.load(1.0)
        server.stop()
        server.command = lambda: [fiu_run, "-x", *plain()]  # the same data directory
        server.start()
        await run.load(1.5)
        acked = run.acked
        enable = [
            "-c",
            "enable name=posix/io/sync/fsync",
            "-c",
            "enable name=posix/io/sync/fdatasync",
        ]
        subprocess.run([fiu_ctrl, *enable, str(server.process.pid)], check=True, timeout=10)
        await run.until(lambda: server.process.poll() is not None, timeout=20)
        assert server.process.returncode == 1
        log = (server.data_dir / "redis.log").read_text()
        assert "Can't persist AOF for fsync error" in log
        await run.load(1.0)  # against a Redis that is gone
        server.command = plain
        server.start()
        await run.load(1.5)
        await run.settle(timeout=90)
        assert run.acked > acked


async def test_latency_between_the_services_and_redis(stack_factory, chaos, fault_proxy):
    """M12: every service talks to Redis through a proxy adding 5-25 ms per chunk."""
    stack = stack_factory(start=False)
    proxy = fault_proxy(stack.redis.port)
    proxy.latency, proxy.jitter = 0.005, 0.02
    env = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    for kind in ("transform", "transform", "presence", "gateway", "gateway"):
        stack.add(kind, **env)
    for service in stack.services:
        service.wait_ready()
    async with chaos(stack, "slow-redis") as run:
        await run.load(3.0)
        await run.settle()


# -- the network between clients and gateways (M13, M14, and latency) ---------------------


def proxied(proxies, doc: str):
    path = f"/v1/collaborate/{doc}"
    return lambda i: [proxies[(i + k) % len(proxies)].url(path) for k in range(len(proxies))]


async def test_latency_and_jitter_between_clients_and_gateways(fault_stack, chaos, fault_proxy):
    stack = fault_stack()
    proxies = [fault_proxy(g.port) for g in stack.of("gateway")]
    for proxy in proxies:
        proxy.latency, proxy.jitter = 0.02, 0.06
    async with chaos(stack, "laggy", urls=proxied(proxies, "laggy")) as run:
        await run.load(3.0, drops=0.01)
        await run.settle()


async def test_half_open_connections_are_detected_and_ops_resent(fault_stack, chaos, fault_proxy):
    """M13: the network stops carrying anything (no FIN, no RST). The gateway's pings go
    unanswered and it closes its side; the clients' own pings time out and they reconnect
    through the same proxy (new connections flow) and resend what was in flight."""
    stack = fault_stack(COLLAB_GATEWAY_HEARTBEAT_MS="500")
    gateway = stack.of("gateway")[0]
    proxy = fault_proxy(gateway.port)
    urls = proxied([proxy], "half-open")
    async with chaos(
        stack, "half-open", clients=4, urls=urls, ping_interval=0.5, close_timeout=0.5
    ) as run:
        await run.load(1.0)
        proxy.stall()
        for client in run.clients:
            run.edit(client, run.rng)  # in flight into the void
        await run.until(lambda: all(c.connections >= 2 for c in run.clients), 20, load=False)
        await run.load(1.0)
        await run.settle()
    await eventually(
        lambda: (
            metric(
                metrics_of(gateway), 'collab_gateway_disconnects_total{reason="heartbeat_timeout"}'
            )
            >= 4
        )
    )


async def test_connection_reset_mid_frame_commits_the_op_once(fault_stack, chaos, fault_proxy):
    """M14: a connection reset after half of a large op frame, then random resets under
    load: partial frames are discarded, whole ops are resent and commit once."""
    stack = fault_stack()
    proxies = [fault_proxy(g.port) for g in stack.of("gateway")]
    async with chaos(stack, "reset", clients=4, urls=proxied(proxies, "reset")) as run:
        client = run.clients[0]
        big = "é" * 100_000
        for proxy in proxies:
            proxy.cut_next()
        client.insert(0, big)
        await run.settle()
        assert client.connections >= 2
        assert stack.document("reset")["text"].count(big) == 1
        for _ in range(6):
            await run.load(0.4)
            proxies[run.rng.randrange(2)].reset()
        await run.settle()


# -- history beyond the catch-up window (M18) and duplicate delivery (M22) -----------------


async def test_resume_beyond_the_catch_up_window_commits_a_pending_op_at_most_once(
    fault_stack, chaos, fault_proxy
):
    """M18 as it applies here (the full history is kept): a client offline with an op in
    flight while others make more ops than a resume replays gets the text in its welcome,
    resends its op as a ghost, and everything converges with the op applied once."""
    stack = fault_stack(COLLAB_GATEWAY_CATCHUP_MAX_OPS="5")
    gateways = stack.of("gateway")
    proxy = fault_proxy(gateways[0].port)

    def urls(i: int) -> list[str]:
        if i == 0:
            return [proxy.url("/v1/collaborate/far-behind")]
        return [stack.ws_url("far-behind", gateways[i % 2])]

    async with chaos(stack, "far-behind", clients=4, urls=urls) as run:
        late = run.clients[0]
        late.insert(0, "base ")
        await run.settle()
        proxy.stall()
        late.insert(0, "pending ")
        late.insert(0, "buffered ")
        others = run.clients[1:]
        for n in range(20):
            others[n % 3].insert(0, f"<{n}>")
            await asyncio.sleep(0.01)
        await asyncio.gather(*(c.synced() for c in others))
        proxy.reset()
        await run.settle()
        assert "text" in late.welcomes()[-1] or "text" in late.welcomes()[-2]
    text = stack.document("far-behind")["text"]
    assert text.count("pending ") == 1
    assert text.count("buffered ") == 1


async def test_duplicate_delivery_on_the_bus_commits_nothing(stack, chaos):
    """M22: the same submission written to the ingress stream again is a duplicate."""
    async with chaos(stack, "dup-bus", clients=1) as run:
        client = run.clients[0]
        client.insert(0, "once")
        await client.synced()
        [entry] = stack.history("dup-bus")
        submission = Submission(
            doc="dup-bus",
            client=entry["client"],
            id=entry["id"],
            v=0,
            op=entry["op"],
            author=entry["author"],
            session="s-replayed",
            gateway="replayer",
            ts=time.time(),
        )
        transform = stack.of("transform")[0]
        before = metric(metrics_of(transform), "collab_transform_duplicates_total")
        r = redis.Redis.from_url(stack.redis.url)
        try:
            shard = keys.shard_of("dup-bus", 2)
            r.xadd(keys.op_ingress(shard), submission.stream_fields())
            inbox = keys.inbox("replayer")
            await eventually(lambda: r.xlen(inbox) > 0)
            [(_, reply)] = r.xrange(inbox)
        finally:
            r.close()
        assert reply[b"kind"] == b"ack"
        assert json.loads(reply[b"v"]) == 0
        assert metric(metrics_of(transform), "collab_transform_duplicates_total") == before + 1
        await run.settle()
    assert stack.document("dup-bus") == {"id": "dup-bus", "version": 1, "text": "once"}


def test_the_http_api_answers_internal_while_redis_is_down(stack) -> None:
    """PROTOCOL.md: ``internal`` when nothing was done, never a bare 500; back after."""
    headers = {"Authorization": f"Bearer {stack.token()}"}
    url = f"{stack.http()}/v1/documents/while-down"
    stack.redis.kill()
    try:
        for request in (
            lambda: httpx.get(url, headers=headers, timeout=30),
            lambda: httpx.get(f"{url}/history", headers=headers, timeout=30),
            lambda: httpx.post(f"{url}/restore", json={"version": 0}, headers=headers, timeout=30),
        ):
            response = request()
            assert (response.status_code, response.json()["error"]) == (503, "internal")
    finally:
        stack.redis.start()
    deadline = time.monotonic() + 20
    while httpx.get(url, headers=headers, timeout=30).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
