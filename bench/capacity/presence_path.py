"""Presence alone: joins, then cursor updates at a fixed rate, read back as a gateway.

Run from the repository root (docs/scaling.md, M5)::

    .venv/bin/python -m bench.capacity.presence_path always 10000 1000 10

Arguments: Redis's ``appendfsync``, sessions (in rooms of 5), cursor updates per second,
measured seconds. Redis and one presence process run pinned to core 0, this driver to
core 1 (``--server-cores``, ``--driver-cores``).

The driver plays one gateway hosting every document: it writes the joins and then the
cursor updates of random sessions to the presence ingress, as a gateway does, every
10 ms; it keeps its load report alive and reads the presence stream of each document it
is notified of. It waits until presence has saved every room before it measures.

Prints one JSON object, over the window: updates sent, events read back, CPU per update
of presence and Redis, and Redis commands per update.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from bench.capacity.common import (
    SHARDS,
    Service,
    add_core_options,
    command_stats,
    difference,
    pin_self,
    redis_pid,
    service_env,
    start_redis,
    start_service,
    stop_services,
    wait_ready,
)
from bench.stack import cpu_seconds
from collab_core import keys
from collab_core.ingress import PresenceUpdate
from collab_presence.worker import ROSTERS

GATEWAY = "bench"
ROOM = 5
READ_COUNT = 500
#: Updates are written in batches this often.
TICK = 0.01

_encode = msgspec.json.encode


@dataclass
class Reader:
    """The gateway's side: its inbox, then the presence streams it is told about."""

    redis: Redis
    presence_cursor: dict[str, bytes | str] = field(default_factory=dict)
    inbox_cursor: bytes | str = "0-0"
    events: int = 0
    stopped: bool = False

    async def start_at_end(self, docs: list[str]) -> None:
        """Skip what the joins published: cursors at the current end of every stream."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for doc in docs:
                pipe.xrevrange(keys.presence(doc), count=1)
            pipe.xrevrange(keys.inbox(GATEWAY), count=1)
            *lasts, inbox = await pipe.execute()
        for doc, last in zip(docs, lasts, strict=True):
            self.presence_cursor[doc] = last[0][0] if last else "0-0"
        self.inbox_cursor = inbox[0][0] if inbox else "0-0"

    async def run(self) -> None:
        while not self.stopped:
            response: Any = await self.redis.xread(
                {keys.inbox(GATEWAY): self.inbox_cursor}, count=READ_COUNT, block=200
            )
            due: set[str] = set()
            for _, entries in response or []:
                self.inbox_cursor = entries[-1][0]
                due.update(f[b"doc"].decode() for _, f in entries if f.get(b"kind") == b"doc")
            if not due:
                continue
            ordered = sorted(due)
            async with self.redis.pipeline(transaction=False) as pipe:
                for doc in ordered:
                    pipe.xread({keys.presence(doc): self.presence_cursor[doc]}, count=READ_COUNT)
                found = await pipe.execute()
            for doc, streams in zip(ordered, found, strict=True):
                for _, entries in streams or []:
                    self.presence_cursor[doc] = entries[-1][0]
                    self.events += len(entries)


def update(
    pipe: Any, doc: str, session: str, kind: str, participant: bytes = b"", state: bytes = b""
) -> None:
    """Queue on ``pipe`` what a gateway writes to the presence ingress."""
    found = PresenceUpdate(
        kind=kind,
        doc=doc,
        session=session,
        gateway=GATEWAY,
        ts=time.time(),
        participant=participant,
        state=state,
    )
    pipe.xadd(keys.presence_ingress(keys.shard_of(doc, SHARDS)), found.stream_fields())


async def measure(
    url: str, pids: dict[str, int], sessions: int, rate: float, seconds: float
) -> dict[str, Any]:
    redis = Redis.from_url(url)
    docs = [f"pp-{i // ROOM}" for i in range(sessions)]
    rooms = sorted(set(docs))
    await redis.set(keys.gateway_load(GATEWAY), b"{}", ex=3600)
    async with redis.pipeline(transaction=False) as pipe:
        for doc in rooms:
            pipe.zadd(keys.hosts(doc), {GATEWAY: time.time() + 3600})
        await pipe.execute()
    for start in range(0, sessions, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(sessions, start + 1000)):
                participant = {
                    "session": f"s{i}",
                    "user": {"id": f"u{i}", "name": "x", "color": "#000"},
                    "role": "editor",
                }
                update(pipe, docs[i], f"s{i}", "join", participant=_encode(participant))
            await pipe.execute()
    joined = time.monotonic() + 120
    while await redis.scard(ROSTERS) < len(rooms):
        if time.monotonic() > joined:
            raise TimeoutError("presence did not save every room within 120 s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the joins' last flush

    reader = Reader(Redis.from_url(url))
    await reader.start_at_end(rooms)
    calls_before, _ = await command_stats(redis)
    cpu_before, started = {k: cpu_seconds(p) for k, p in pids.items()}, time.perf_counter()
    task = asyncio.create_task(reader.run())
    rng = random.Random(7)
    sent = 0
    per_tick = max(1, round(rate * TICK))
    deadline = started + seconds
    next_at = started
    while time.perf_counter() < deadline:
        next_at += TICK
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(per_tick):
                i, pos = rng.randrange(sessions), rng.randrange(1000)
                state = {"v": 1, "cursor": {"anchor": pos, "head": pos}, "meta": None}
                update(pipe, docs[i], f"s{i}", "presence", state=_encode(state))
                sent += 1
            await pipe.execute()
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.sleep(0.5)  # the last flush (every 40 ms), published and read
    reader.stopped = True
    await task
    elapsed = time.perf_counter() - started
    cpu_after = {k: cpu_seconds(p) for k, p in pids.items()}
    cpu = difference(cpu_before, cpu_after, keep_zero=True)
    calls_after, _ = await command_stats(redis)
    calls = difference(calls_before, calls_after)
    await reader.redis.aclose()
    await redis.aclose()
    if not sent:
        raise RuntimeError("no update sent")
    return {
        "elapsed_s": round(elapsed, 2),
        "updates_sent": sent,
        "updates_per_second": round(sent / seconds, 1),
        "events_read": reader.events,
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_us_per_update": {k: round(v / sent * 1e6, 1) for k, v in cpu.items()},
        "redis_calls_per_update": {
            k: round(v / sent, 3) for k, v in sorted(calls.items()) if v / sent >= 0.005
        },
    }


def run(
    appendfsync: str, sessions: int, rate: float, seconds: float, *, server_cores: str = "0"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="collab-capacity-") as tmp:
        root = Path(tmp)
        server = start_redis(root / "redis", appendfsync, server_cores)
        services: list[Service] = []
        try:
            env = service_env(server.url)
            services.append(start_service("presence", "presence", env, server_cores, root))
            wait_ready(services[0])
            pids = {"presence": services[0].pid, "redis": redis_pid(server)}
            result = asyncio.run(measure(server.url, pids, sessions, rate, seconds))
        finally:
            stop_services(services)
            server.stop()
    return {"appendfsync": appendfsync, "sessions": sessions, "rate": rate, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity.presence_path", description=__doc__.splitlines()[0]
    )
    parser.add_argument("appendfsync", choices=["always", "everysec"])
    parser.add_argument("sessions", type=int, help="sessions, in rooms of 5")
    parser.add_argument("rate", type=float, help="cursor updates per second")
    parser.add_argument("seconds", type=float, help="measured window")
    add_core_options(parser)
    args = parser.parse_args(argv)
    pin_self(args.driver_cores)
    result = run(
        args.appendfsync, args.sessions, args.rate, args.seconds, server_cores=args.server_cores
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
