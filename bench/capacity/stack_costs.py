"""Unit costs of one ``bench.load`` scenario over its measured window (after warm-up).

Run from the repository root (docs/scaling.md, M1)::

    .venv/bin/python -m bench.capacity.stack_costs room-100x50 10
    .venv/bin/python -m bench.capacity.stack_costs rooms-200x5 10 --appendfsync everysec

Arguments: a ``bench.load`` scenario (``python -m bench.load --list``) and its measured
seconds. The whole stack runs as in ``bench.load``: Redis, edit-transform, presence and
the scenario's gateways pinned to core 0 (``--server-cores``), the WebSocket clients in
this process on core 1 (``--driver-cores``).

``bench.load.run_load`` calls the stack's ``cpu()`` exactly at the start and at the end of
its measured window; :class:`MeasuredStack` also snapshots ``INFO commandstats`` and the
services' metrics there. Prints one JSON object: commits/s, frames queued by the
gateways, CPU per commit of every process and the gateways' CPU per frame, Redis commands
and time inside commands per commit, the metrics that moved, and the load run's own
report (latencies, convergence, errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench.capacity.common import (
    add_core_options,
    difference,
    parse_command_stats,
    pin_self,
    scrape,
)
from bench.load import SCENARIOS, run_load
from bench.stack import ServerStack

METRICS = (
    "collab_transform_commits_total",
    "collab_transform_version_conflicts_total",
    "collab_transform_process_seconds",
    "collab_transform_commit_seconds",
    "collab_gateway_messages_out_total",
    "collab_presence_updates_total",
)


@dataclass
class MeasuredStack(ServerStack):
    """A ``ServerStack`` whose ``cpu()`` also snapshots Redis's and the services' counters."""

    snapshots: list[dict[str, dict[str, float]]] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        assert self.redis is not None, "not started"
        with redis.Redis.from_url(self.redis.url) as client:
            calls, usec = parse_command_stats(client.info("commandstats"))
        snapshot = {"cpu": super().cpu(), "calls": calls, "usec": usec}
        for process in self.processes:
            assert process.port is not None
            snapshot[process.name] = scrape(process.port, METRICS)
        self.snapshots.append(snapshot)
        return snapshot["cpu"]


def costs(
    seconds: float, snapshots: list[dict[str, dict[str, float]]], load: dict[str, Any]
) -> dict[str, Any]:
    """The unit costs between the first two snapshots (the measured window)."""
    if len(snapshots) < 2:
        raise RuntimeError("the scenario has no measured window (an idle scenario?)")
    first, last = snapshots[0], snapshots[1]
    d = {part: difference(first[part], last[part], keep_zero=part == "cpu") for part in first}
    commits = d["transform"].get("collab_transform_commits_total", 0)
    frames = sum(v for part, m in d.items() if part.startswith("gateway") for v in m.values())
    if not commits or not frames:
        raise RuntimeError(f"nothing measured: {commits} commits, {frames} frames")
    gateway_cpu = sum(v for k, v in d["cpu"].items() if k.startswith("gateway"))
    return {
        "commits": int(commits),
        "commits_per_second": round(commits / seconds, 1),
        "gateway_frames_queued": int(frames),
        "frames_per_second": round(frames / seconds, 1),
        "cpu_seconds": {k: round(v, 3) for k, v in d["cpu"].items()},
        "cpu_us_per_commit": {k: round(v / commits * 1e6, 1) for k, v in d["cpu"].items()},
        "gateway_cpu_us_per_frame": round(gateway_cpu / frames * 1e6, 2),
        "redis_calls_per_commit": {k: round(v / commits, 2) for k, v in sorted(d["calls"].items())},
        "redis_us_per_call": {
            k: round(v / d["calls"][k], 1)
            for k, v in sorted(d["usec"].items())
            if d["calls"].get(k)
        },
        "redis_command_us_per_commit": round(sum(d["usec"].values()) / commits, 1),
        "metrics_delta": {p: m for p, m in d.items() if p not in ("cpu", "calls", "usec")},
        "load": {
            k: load.get(k)
            for k in ("deliveries", "fanout_ms", "ack_ms", "converged", "errors", "saturated")
        },
    }


def run(
    name: str, seconds: float, *, appendfsync: str | None = None, server_cores: str = "0"
) -> dict[str, Any]:
    scenario = replace(SCENARIOS[name], seconds=seconds)
    if appendfsync:
        scenario = replace(scenario, appendfsync=appendfsync)
    with tempfile.TemporaryDirectory(prefix="collab-capacity-") as tmp:
        stack = MeasuredStack(
            Path(tmp),
            cores=server_cores or None,
            appendfsync=scenario.appendfsync,
            gateways=scenario.gateways,
        )
        stack.start({"COLLAB_GATEWAY_DRAIN_SECONDS": "1"})
        try:
            load = asyncio.run(run_load(scenario, stack, random.Random(7)))
        finally:
            stack.stop()
    return {"scenario": asdict(scenario), **costs(seconds, stack.snapshots, load)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity.stack_costs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS), metavar="scenario")
    parser.add_argument("seconds", type=float, help="measured window")
    parser.add_argument("--appendfsync", choices=["always", "everysec"])
    add_core_options(parser)
    args = parser.parse_args(argv)
    pin_self(args.driver_cores)
    result = run(
        args.scenario, args.seconds, appendfsync=args.appendfsync, server_cores=args.server_cores
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
