"""Commits/s of one Redis running the commit script alone, by commits in flight.

Run from the repository root (docs/scaling.md, M4)::

    .venv/bin/python -m bench.capacity.commit_script always 3 1 4 16 64

Arguments: Redis's ``appendfsync`` (``always`` or ``everysec``), seconds per step, then
one or more numbers of concurrent committers. No service runs: each committer has its
own document and connection and calls edit-transform's check-and-append script
(:meth:`collab_transform.commit.Committer.append`) back to back, so up to that many
commits are in flight. Redis runs pinned to core 0, this driver to core 1
(``--server-cores``, ``--driver-cores``).

Prints one JSON object per step (a line each): committers, commits/s, Redis CPU per
commit and the share of a core Redis used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.capacity.common import add_core_options, pin_self, redis_pid, start_redis
from bench.stack import cpu_seconds
from collab_core.store import LogEntry
from collab_transform.commit import Committer, DocumentView


async def step(url: str, pid: int, committers: int, seconds: float) -> dict[str, Any]:
    """``committers`` committers for ``seconds`` against the Redis at ``url`` (pid ``pid``)."""
    clients = [Redis.from_url(url) for _ in range(committers)]
    counts = [0] * committers
    deadline = time.perf_counter() + seconds

    async def commit_loop(n: int) -> None:
        committer = Committer(clients[n])
        doc = f"cs-{committers}-{n}"
        view = DocumentView(0, "")
        while time.perf_counter() < deadline:
            entry = LogEntry(
                v=view.version,
                op_json=b'["a"]',
                client="c",
                id=str(view.version),
                author="bench",
                session="s",
                ts=time.time(),
                base=view.version,
                digest="0" * 24,
            )
            if await committer.append(doc, view, entry, view.text + "a") is None:
                raise RuntimeError(f"{doc}: the head moved under its only committer")
            counts[n] += 1

    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(commit_loop(n) for n in range(committers)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    for client in clients:
        await client.aclose()
    total = sum(counts)
    return {
        "committers": committers,
        "commits_per_second": round(total / elapsed),
        "redis_cpu_us_per_commit": round(cpu / total * 1e6, 1),
        "redis_cpu_share": round(cpu / elapsed, 2),
    }


def run(appendfsync: str, seconds: float, steps: list[int], *, server_cores: str = "0") -> None:
    """Print one line of JSON per step, as soon as it is measured."""
    with tempfile.TemporaryDirectory(prefix="collab-capacity-") as tmp:
        server = start_redis(Path(tmp), appendfsync, server_cores)
        try:
            for committers in steps:
                result = asyncio.run(step(server.url, redis_pid(server), committers, seconds))
                print(json.dumps({"appendfsync": appendfsync, **result}), flush=True)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity.commit_script", description=__doc__.splitlines()[0]
    )
    parser.add_argument("appendfsync", choices=["always", "everysec"])
    parser.add_argument("seconds", type=float, help="measured seconds per step")
    parser.add_argument("committers", type=int, nargs="+", help="commits in flight, per step")
    add_core_options(parser)
    args = parser.parse_args(argv)
    pin_self(args.driver_cores)
    run(args.appendfsync, args.seconds, args.committers, server_cores=args.server_cores)


if __name__ == "__main__":
    main()
