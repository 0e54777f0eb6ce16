"""edit-transform's commit path, saturated: commits/s and the work per commit.

Run from the repository root (docs/scaling.md, M2 and M3)::

    .venv/bin/python -m bench.capacity.commit_path always 1 64 10
    .venv/bin/python -m bench.capacity.commit_path always 1 64 10 --wait-replica
    .venv/bin/python -m bench.capacity.commit_path always 1 64 5 --strace-fsync

Arguments: Redis's ``appendfsync`` (``always`` or ``everysec``), edit-transform replicas,
documents, measured seconds. Redis and the replicas run pinned to core 0, this driver to
core 1 (``--server-cores``, ``--driver-cores``).

No gateway and no WebSocket client: a closed-loop driver keeps one op in flight per
document. It submits to the ingress what a gateway submits, registers itself as the
gateway hosting every document, and reads as a gateway does: it blocks on its inbox,
then, pipelined, reads each notified document's log up to the version the notification
made visible, and its presence stream. Once it has seen a document's commit it submits
the document's next op (based on the version just committed).

``--wait-replica`` attaches a Redis replica (pinned with the driver) and makes
edit-transform wait for it (``COLLAB_TRANSFORM_WAIT_REPLICAS=1``). ``--strace-fsync``
counts Redis's fsyncs over the window with ``strace -f -ttt -T``; strace slows Redis
down, so use its counts and time per call, not its commits/s.

Prints one JSON object, over the window after ``--warmup``: commits/s; CPU per commit of
Redis and each replica; Redis commands, time inside commands, memory and AOF bytes per
commit; edit-transform's mean ``commit_seconds`` (the commit script) and
``process_seconds`` (deciding and committing one op, without the wait for the lock);
with ``--strace-fsync``, fsyncs per commit and their mean wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

from bench.capacity.common import (
    SHARDS,
    Service,
    add_core_options,
    command_stats,
    difference,
    pin_self,
    redis_pid,
    scrape,
    service_env,
    start_redis,
    start_service,
    stop_services,
    wait_ready,
)
from bench.stack import cpu_seconds
from collab_core import keys
from collab_core.ingress import Submission

#: The gateway id the driver plays.
GATEWAY = "bench"
#: Entries read per call, as the gateway (collab_gateway.reader.READ_COUNT).
READ_COUNT = 500
METRICS = ("collab_transform_",)
#: A line of ``strace -f -ttt -T``: the thread, the time, then a call or its end.
_LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\d+\.\d+) (.*)$")
_CALL = re.compile(r"^f(?:data)?sync\(")
_DONE = re.compile(r"^(?:f(?:data)?sync\(|<\.\.\. f(?:data)?sync resumed>).* <(\d+\.\d+)>$")


@dataclass
class Snapshot:
    wall: float
    cpu: dict[str, float]
    calls: dict[str, float]
    usec: dict[str, float]
    metrics: dict[str, float]
    memory: int
    aof: int


@dataclass
class Driver:
    """Plays every document's author and the one gateway hosting them all."""

    redis: Redis
    docs: list[str]
    #: Per document: the next version to read, and what the last notification made readable.
    version: dict[str, int] = field(default_factory=dict)
    readable: dict[str, int] = field(default_factory=dict)
    presence_cursor: dict[str, bytes | str] = field(default_factory=dict)
    inbox_cursor: bytes | str = "0-0"
    seen: int = 0
    stopped: bool = False

    def submit(self, pipe: Any, doc: str, v: int) -> None:
        sub = Submission(
            doc=doc,
            client=f"c-{doc}",
            id=str(v),
            v=v,
            op=["a"],
            author="bench",
            session="s-bench",
            gateway=GATEWAY,
            ts=time.time(),
        )
        pipe.xadd(keys.op_ingress(keys.shard_of(doc, SHARDS)), sub.stream_fields())

    async def start(self) -> None:
        expires = time.time() + 3600
        async with self.redis.pipeline(transaction=False) as pipe:
            for doc in self.docs:
                # What a gateway's welcome does: it hosts the document.
                pipe.zadd(keys.hosts(doc), {GATEWAY: expires})
                self.submit(pipe, doc, 0)
                self.version[doc] = self.readable[doc] = 0
                self.presence_cursor[doc] = "0-0"
            await pipe.execute()

    async def run(self) -> None:
        while not self.stopped:
            response: Any = await self.redis.xread(
                {keys.inbox(GATEWAY): self.inbox_cursor}, count=READ_COUNT, block=500
            )
            due: set[str] = set()
            for _, entries in response or []:
                self.inbox_cursor = entries[-1][0]
                for _, fields in entries:
                    if fields.get(b"kind") == b"doc":
                        doc = fields[b"doc"].decode()
                        due.add(doc)
                        if b"v" in fields:
                            self.readable[doc] = max(self.readable[doc], int(fields[b"v"]))
            if due:
                await self.read(sorted(due))

    async def read(self, due: list[str]) -> None:
        reads_log = [self.readable[doc] > self.version[doc] for doc in due]
        async with self.redis.pipeline(transaction=False) as pipe:
            for doc, has_log in zip(due, reads_log, strict=True):
                if has_log:
                    pipe.xrange(
                        keys.log(doc),
                        keys.log_entry_id(self.version[doc]),
                        keys.log_entry_id(self.readable[doc] - 1),
                        count=READ_COUNT,
                    )
                pipe.xread({keys.presence(doc): self.presence_cursor[doc]}, count=READ_COUNT)
            responses = iter(await pipe.execute())
        async with self.redis.pipeline(transaction=False) as pipe:
            for doc, has_log in zip(due, reads_log, strict=True):
                entries = next(responses) if has_log else []
                for _, presence in next(responses) or []:
                    self.presence_cursor[doc] = presence[-1][0]
                if entries:
                    self.seen += len(entries)
                    self.version[doc] = keys.version_of_entry(entries[-1][0]) + 1
                    self.submit(pipe, doc, self.version[doc])
            await pipe.execute()


class FsyncCounter:
    """Redis's fsync calls, every thread, timestamped by strace."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.tracer = subprocess.Popen(
            [
                "strace",
                "-f",
                "-ttt",
                "-T",
                "-e",
                "trace=fdatasync,fsync",
                "-p",
                str(pid),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.tracer.send_signal(signal.SIGINT)
        self.tracer.wait(10)

    def between(self, start: float, end: float) -> tuple[int, float]:
        """(fsyncs started in [start, end), their mean wall time in seconds)."""
        count, durations = 0, []
        for line in self.out.read_text().splitlines():
            found = _LINE.match(line)
            if not found or not start <= float(found.group(1)) < end:
                continue
            call = found.group(2)
            if _CALL.match(call):
                count += 1
            done = _DONE.match(call)
            if done:
                durations.append(float(done.group(1)))
        return count, sum(durations) / len(durations) if durations else 0.0


async def snapshot(redis: Redis, pids: dict[str, int], services: list[Service]) -> Snapshot:
    calls, usec = await command_stats(redis)
    memory: Any = await redis.info("memory")
    persistence: Any = await redis.info("persistence")
    metrics: dict[str, float] = {}
    for service in services:
        for name, value in scrape(service.port, METRICS).items():
            metrics[name] = metrics.get(name, 0) + value
    return Snapshot(
        wall=time.time(),
        cpu={name: cpu_seconds(pid) for name, pid in pids.items()},
        calls=calls,
        usec=usec,
        metrics=metrics,
        memory=int(memory["used_memory"]),
        aof=int(persistence.get("aof_current_size", 0)),
    )


async def measure(
    url: str,
    pids: dict[str, int],
    services: list[Service],
    docs: int,
    seconds: float,
    warmup: float,
    fsyncs: FsyncCounter | None,
) -> dict[str, Any]:
    redis = Redis.from_url(url)
    driver = Driver(Redis.from_url(url), [f"cp-{n}" for n in range(docs)])
    await driver.start()
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(warmup)
    before, seen = await snapshot(redis, pids, services), driver.seen
    await asyncio.sleep(seconds)
    after, seen = await snapshot(redis, pids, services), driver.seen - seen
    driver.stopped = True
    await task
    await driver.redis.aclose()
    await redis.aclose()

    elapsed = after.wall - before.wall
    m = difference(before.metrics, after.metrics)
    commits = m.get("collab_transform_commits_total", 0)
    if not commits:
        raise RuntimeError("no commit in the window")
    cpu = difference(before.cpu, after.cpu, keep_zero=True)
    calls = difference(before.calls, after.calls)
    usec = difference(before.usec, after.usec)
    result: dict[str, Any] = {
        "elapsed_s": round(elapsed, 2),
        "commits": int(commits),
        "commits_per_second": round(commits / elapsed, 1),
        "commits_seen_by_driver": seen,
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_us_per_commit": {k: round(v / commits * 1e6, 1) for k, v in cpu.items()},
        "redis_calls_per_commit": {k: round(v / commits, 3) for k, v in sorted(calls.items())},
        "redis_command_us_per_commit": round(sum(usec.values()) / commits, 1),
        "redis_memory_bytes_per_commit": round((after.memory - before.memory) / commits),
        "aof_bytes_per_commit": round((after.aof - before.aof) / commits),
        "commit_seconds_mean_ms": _mean_ms(m, "collab_transform_commit_seconds"),
        "process_seconds_mean_ms": _mean_ms(m, "collab_transform_process_seconds"),
        "conflicts_per_commit": round(
            m.get("collab_transform_version_conflicts_total", 0) / commits, 3
        ),
        "duplicates": int(m.get("collab_transform_duplicates_total", 0)),
        "refused": {k: v for k, v in m.items() if k.startswith("collab_transform_refused")},
        "unreplicated": int(m.get("collab_transform_unreplicated_total", 0)),
    }
    if fsyncs is not None:
        fsyncs.stop()
        count, wall = fsyncs.between(before.wall, after.wall)
        result["fsyncs"] = count
        result["fsyncs_per_commit"] = round(count / commits, 3)
        result["fsync_wall_us_mean"] = round(wall * 1e6, 1)
    return result


def _mean_ms(m: dict[str, float], histogram: str) -> float | None:
    count = m.get(f"{histogram}_count", 0)
    return round(m.get(f"{histogram}_sum", 0) / count * 1e3, 3) if count else None


def wait_for_replica(url: str, timeout: float = 30) -> None:
    """Until the master counts its replica online: the first sync can start seconds after
    the replica connects (Redis 7 syncs without disk after ``repl-diskless-sync-delay``),
    and a WAIT before it ends would time out."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            info: Any = client.info("replication")
            if any(isinstance(v, dict) and v.get("state") == "online" for v in info.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica online after {timeout} s: {info}")
            time.sleep(0.1)
    finally:
        client.close()


def run(
    appendfsync: str,
    replicas: int,
    docs: int,
    seconds: float,
    *,
    warmup: float = 1.0,
    wait_replica: bool = False,
    strace_fsync: bool = False,
    server_cores: str = "0",
    replica_cores: str = "1",
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="collab-capacity-") as tmp:
        root = Path(tmp)
        server = start_redis(root / "redis", appendfsync, server_cores)
        services: list[Service] = []
        copy = None
        fsyncs = None
        try:
            env = service_env(server.url)
            if wait_replica:
                copy = start_redis(
                    root / "replica",
                    appendfsync,
                    replica_cores,
                    ("--replicaof", "127.0.0.1", str(server.port)),
                )
                env["COLLAB_TRANSFORM_WAIT_REPLICAS"] = "1"
                wait_for_replica(server.url)
            for n in range(replicas):
                services.append(
                    start_service(
                        "transform",
                        f"transform-{n}",
                        env,
                        server_cores,
                        root / "logs",
                        CONSUMER=f"t{n}",
                    )
                )
            for service in services:
                wait_ready(service)
            pids = {s.name: s.pid for s in services} | {"redis": redis_pid(server)}
            if strace_fsync:
                fsyncs = FsyncCounter(redis_pid(server), root / "strace.txt")
            result = asyncio.run(measure(server.url, pids, services, docs, seconds, warmup, fsyncs))
        finally:
            if fsyncs is not None and fsyncs.tracer.poll() is None:
                fsyncs.stop()
            stop_services(services)
            server.stop()
            if copy is not None:
                copy.stop()
    return {
        "appendfsync": appendfsync,
        "replicas": replicas,
        "docs": docs,
        "wait_replica": wait_replica,
        **result,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity.commit_path", description=__doc__.splitlines()[0]
    )
    parser.add_argument("appendfsync", choices=["always", "everysec"])
    parser.add_argument("replicas", type=int, help="edit-transform replicas")
    parser.add_argument("docs", type=int, help="documents, one op in flight each")
    parser.add_argument("seconds", type=float, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before it (1)")
    parser.add_argument(
        "--wait-replica",
        action="store_true",
        help="attach a Redis replica and make edit-transform wait for it",
    )
    parser.add_argument(
        "--strace-fsync",
        action="store_true",
        help="count Redis's fsyncs with strace (slows Redis down)",
    )
    add_core_options(parser)
    args = parser.parse_args(argv)
    pin_self(args.driver_cores)
    result = run(
        args.appendfsync,
        args.replicas,
        args.docs,
        args.seconds,
        warmup=args.warmup,
        wait_replica=args.wait_replica,
        strace_fsync=args.strace_fsync,
        server_cores=args.server_cores,
        replica_cores=args.driver_cores,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
