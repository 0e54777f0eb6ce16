"""Load benchmark: many connections per document over many documents, editors and readers.

Run: ``.venv/bin/python -m bench.load --scenario room-100x50`` (``--list`` names them;
``--out results.json`` also writes JSON; ``--markdown`` prints a table row).

The server stack (Redis, edit-transform, presence, gateways) runs pinned to core 0 and
this generator to core 1 (``taskset``). Editors are full OT clients
(:class:`collab_client.connection.CollabClient`); readers do the least work that still
measures arrival: they decode only ``type``, ``client`` and ``id`` of each frame. Ops are
scheduled as a Poisson process at the aggregate rate over all editors.

Reported: fan-out latency (an editor's send of an op to each other client's receipt) and
ack latency, p50 / p95 / p99 / max; deliveries per second; errors; convergence (every
editor's text equals the server's); CPU seconds and peak RSS of every server process;
server CPU per delivered message; and the generator's own CPU and event-loop delay, with
``saturated`` set when the generator, not the server, may have been the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets

from bench.stack import ServerStack
from collab_client.connection import CollabClient
from collab_core.auth import TokenCodec


@dataclass(frozen=True)
class Scenario:
    name: str
    docs: int = 1
    users_per_doc: int = 10
    editors_per_doc: int = 5
    ops_per_second: float = 50.0
    seconds: float = 20.0
    warmup: float = 3.0
    gateways: int = 1
    appendfsync: str = "always"
    #: Idle connections only: measure gateway memory per connection.
    idle: bool = False


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("room-10x50", users_per_doc=10, editors_per_doc=5, ops_per_second=50),
        Scenario("room-100x50", users_per_doc=100, editors_per_doc=10, ops_per_second=50),
        Scenario("room-100x200", users_per_doc=100, editors_per_doc=20, ops_per_second=200),
        Scenario("room-500x50", users_per_doc=500, editors_per_doc=10, ops_per_second=50),
        Scenario("room-1000x50", users_per_doc=1000, editors_per_doc=10, ops_per_second=50),
        Scenario("room-100x1000", users_per_doc=100, editors_per_doc=50, ops_per_second=1000),
        Scenario(
            "rooms-1000x5", docs=1000, users_per_doc=5, editors_per_doc=5, ops_per_second=5000
        ),
        Scenario("rooms-200x5", docs=200, users_per_doc=5, editors_per_doc=5, ops_per_second=1000),
        Scenario("two-gateways-100x50", users_per_doc=100, editors_per_doc=10, gateways=2),
        Scenario(
            "room-100x50-everysec", users_per_doc=100, editors_per_doc=10, appendfsync="everysec"
        ),
        Scenario("idle-1000", docs=100, users_per_doc=10, idle=True),
        Scenario("idle-5000", docs=500, users_per_doc=10, idle=True),
        Scenario("idle-10000", docs=1000, users_per_doc=10, idle=True),
        Scenario(
            "smoke", users_per_doc=4, editors_per_doc=2, ops_per_second=20, seconds=2, warmup=0.5
        ),
    ]
}


class _Frame(msgspec.Struct):
    type: str
    client: str = ""
    id: str = ""


_frame = msgspec.json.Decoder(_Frame).decode


@dataclass
class Recorder:
    """Send times of ops, and the latencies measured against them."""

    measuring: bool = False
    sent: dict[tuple[str, str], float] = field(default_factory=dict)
    fanout: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    deliveries: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def op_sent(self, client: str, op_id: str) -> None:
        if self.measuring:
            self.sent[(client, op_id)] = time.perf_counter()

    def op_received(self, client: str, op_id: str) -> None:
        started = self.sent.get((client, op_id))
        if started is not None:
            self.fanout.append(time.perf_counter() - started)
            self.deliveries += 1

    def ack_received(self, client: str, op_id: str) -> None:
        started = self.sent.get((client, op_id))
        if started is not None:
            self.acks.append(time.perf_counter() - started)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Editor(CollabClient):
    """A full OT client that reports when it sends an op and when acks and ops arrive."""

    def __init__(self, url: str, token: str, recorder: Recorder) -> None:
        super().__init__(url, token, on_message=self._seen)
        self.recorder = recorder

    def _send(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message.get("type") == "op":
                self.recorder.op_sent(self.client_id, message["id"])
        super()._send(messages)

    def _seen(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "op":
            self.recorder.op_received(message["client"], message["id"])
        elif kind == "ack":
            self.recorder.ack_received(self.client_id, message["id"])
        elif kind == "error":
            self.recorder.error(str(message.get("code")))


async def reader(url: str, token: str, recorder: Recorder, ready: asyncio.Event) -> None:
    """A passive participant: hello, then note the arrival of every op."""
    async with websockets.connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "client": os.urandom(6).hex()}))
        await ws.recv()
        ready.set()
        async for frame in ws:
            message = _frame(frame)
            if message.type == "op":
                recorder.op_received(message.client, message.id)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000,
            "count": len(ordered)}  # fmt: skip


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms sleep wakes up: the generator's own event-loop delay."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append(time.perf_counter() - started - 0.01)


def random_edit(text: str, rng: random.Random) -> list[Any]:
    if len(text) > 200 and rng.random() < 0.4:
        start = rng.randrange(len(text) - 3)
        return [start, {"d": rng.randint(1, 3)}] if start else [{"d": rng.randint(1, 3)}]
    position = rng.randint(0, len(text))
    insert = rng.choice(["a", "bc", "def", " ", "\n", "😀"])
    return [position, insert] if position else [insert]


async def run_load(scenario: Scenario, stack: ServerStack, rng: random.Random) -> dict[str, Any]:
    codec = TokenCodec(stack.secret)
    token = codec.mint(sub="bench", name="Bench", doc="*", role="editor", now=time.time(),
                       ttl_seconds=3600)  # fmt: skip
    ports = stack.gateway_ports
    recorder = Recorder()
    editors: list[Editor] = []
    readers: list[asyncio.Task[None]] = []
    ready_events: list[asyncio.Event] = []
    docs = [f"bench-{n}" for n in range(scenario.docs)]
    for d, doc in enumerate(docs):
        for u in range(scenario.users_per_doc):
            url = f"ws://127.0.0.1:{ports[(d + u) % len(ports)]}/v1/collaborate/{doc}"
            if u < (0 if scenario.idle else scenario.editors_per_doc):
                editors.append(Editor(url, token, recorder))
            else:
                event = asyncio.Event()
                ready_events.append(event)
                readers.append(asyncio.create_task(reader(url, token, recorder, event)))
        # Open connections in batches so the handshakes do not all queue at once.
        if readers and d % 50 == 49:
            await asyncio.gather(*(e.wait() for e in ready_events))
    for editor in editors:
        editor.start()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready_events)), 300)
    await asyncio.wait_for(asyncio.gather(*(e.synced(timeout=120) for e in editors)), 300)

    result: dict[str, Any] = {}
    if scenario.idle:
        await asyncio.sleep(2)
        result["connections"] = len(readers)
    else:
        stop = asyncio.Event()
        lag: list[float] = []
        lag_task = asyncio.create_task(loop_lag(lag, stop))
        deadline = time.perf_counter() + scenario.warmup + scenario.seconds
        measure_from = time.perf_counter() + scenario.warmup
        cpu_before: dict[str, float] = {}
        own_before = 0.0
        next_at = time.perf_counter()
        while True:
            now = time.perf_counter()
            if not recorder.measuring and now >= measure_from:
                recorder.measuring = True
                cpu_before = stack.cpu()
                own_before = time.process_time()
                lag.clear()
            if now >= deadline:
                break
            next_at += rng.expovariate(scenario.ops_per_second)
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            editor = rng.choice(editors)
            if editor.connected:
                editor.edit(random_edit(editor.text, rng))
        cpu_after = stack.cpu()
        own = time.process_time() - own_before
        recorder.measuring = False
        stop.set()
        await lag_task
        # Let in-flight deliveries of measured ops arrive.
        await asyncio.gather(*(e.synced(timeout=120) for e in editors))
        await asyncio.sleep(1.0)
        server_cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 3) for k in cpu_after}
        deliveries = recorder.deliveries
        converged = await converge(stack, docs, editors, token)
        lag_ms = percentiles(lag)
        result.update(
            {
                "fanout_ms": percentiles(recorder.fanout),
                "ack_ms": percentiles(recorder.acks),
                "ops_sent": len(recorder.sent),
                "deliveries": deliveries,
                "deliveries_per_second": round(deliveries / scenario.seconds, 1),
                "errors": recorder.errors,
                "converged": converged,
                "server_cpu_seconds": server_cpu,
                "server_cpu_us_per_delivery": round(sum(server_cpu.values()) / deliveries * 1e6, 2)
                if deliveries
                else None,
                "generator_cpu_share": round(own / scenario.seconds, 3),
                "generator_loop_lag_ms": lag_ms,
                # The generator was busy enough to distort the latencies it measured.
                "saturated": own / scenario.seconds > 0.9 or lag_ms["p99"] > 20,
            }
        )
    for editor in editors:
        await editor.close()
    failed = [t for t in readers if t.done() and not t.cancelled() and t.exception() is not None]
    result["readers_lost"] = len(failed)
    if failed:
        result["reader_failure"] = repr(failed[0].exception())
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return result


async def converge(stack: ServerStack, docs: list[str], editors: list[Editor], token: str) -> bool:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.gateway_ports[0]}") as http:
        for doc in docs:
            response = await http.get(f"/v1/documents/{doc}",
                                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            server = response.json()
            for editor in editors:
                if editor.urls[0].endswith(f"/{doc}"):
                    await editor.reaches(server["version"], timeout=60)
                    if editor.text != server["text"]:
                        return False
    return True


def run(
    scenario: Scenario, *, server_cores: str, generator_cores: str, seed: int
) -> dict[str, Any]:
    if generator_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in generator_cores.split(",")})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        stack = ServerStack(Path(tmp), cores=server_cores, gateways=scenario.gateways,
                            appendfsync=scenario.appendfsync)  # fmt: skip
        stack.start({"COLLAB_GATEWAY_DRAIN_SECONDS": "1"})
        try:
            baseline = stack.memory()
            result = asyncio.run(_with_loop(scenario, stack, seed))
            memory = stack.memory()
            result["server_peak_rss_mib"] = {k: round(v[1] / 1024, 1) for k, v in memory.items()}
            if scenario.idle:
                gateways = [k for k in memory if k.startswith("gateway")]
                grown = sum(memory[g][0] - baseline[g][0] for g in gateways)
                result["gateway_kib_per_connection"] = round(grown / result["connections"], 2)
        finally:
            stack.stop()
    return {"scenario": asdict(scenario), **result}


async def _with_loop(scenario: Scenario, stack: ServerStack, seed: int) -> dict[str, Any]:
    return await run_load(scenario, stack, random.Random(seed))


def markdown(result: dict[str, Any]) -> str:
    s = result["scenario"]
    if s["idle"]:
        return (f"| {s['name']} | {result['connections']} idle | | | | | "
                f"{result['gateway_kib_per_connection']} KiB/conn | |")  # fmt: skip
    f, a = result["fanout_ms"], result["ack_ms"]
    flag = " (generator saturated)" if result["saturated"] else ""
    return (
        f"| {s['name']}{flag} | {s['docs']}x{s['users_per_doc']} users, "
        f"{s['ops_per_second']:g} ops/s "
        f"| {f['p50']:.1f} / {f['p95']:.1f} / {f['p99']:.1f} / {f['max']:.1f} "
        f"| {a['p50']:.1f} / {a['p99']:.1f} | {result['deliveries_per_second']:.0f} "
        f"| {result['server_cpu_us_per_delivery']} | {'yes' if result['converged'] else 'NO'} "
        f"| {sum(result['errors'].values())} |"
    )


HEADER = (
    "| scenario | load | fan-out ms p50 / p95 / p99 / max | ack ms p50 / p99 | deliveries/s "
    "| server CPU µs / delivery | converged | errors |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scenario", action="append", help="scenario name (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--server-cores", default="0", help="cores for the server stack (0)")
    parser.add_argument("--generator-cores", default="1", help="cores for this generator (1)")
    parser.add_argument("--seconds", type=float, help="override the measured duration")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write all results as JSON")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS.values():
            print(scenario)
        return 0
    results = []
    print(HEADER)
    for name in args.scenario or ["smoke"]:
        scenario = SCENARIOS[name]
        if args.seconds:
            scenario = Scenario(**{**asdict(scenario), "seconds": args.seconds})
        result = run(scenario, server_cores=args.server_cores,
                     generator_cores=args.generator_cores, seed=args.seed)  # fmt: skip
        results.append(result)
        print(markdown(result), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0 if all(r.get("converged", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
