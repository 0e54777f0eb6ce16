"""Smoke runs of the capacity measurements (bench/capacity, docs/scaling.md), so they cannot
rot: each runs its command line from the repository root for a second or two against a
real Redis and real services, and the report must have its fields with values above 0.
The numbers themselves are not judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def capacity(module: str, *args: str, pinned: bool = True) -> str:
    """Run ``python -m bench.capacity.<module> <args>`` from the repository root; its stdout.
    Redis and the services are pinned to core 0 as in a real run, the driver is not."""
    cores = ["--driver-cores="] if pinned else []
    done = subprocess.run(
        [sys.executable, "-m", f"bench.capacity.{module}", *args, *cores],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_commit_path_reports_commits_and_their_costs() -> None:
    result = json.loads(capacity("commit_path", "always", "1", "8", "1.5", "--warmup", "0.3"))
    assert result["commits"] > 0
    assert result["commits_per_second"] > 0
    assert result["commits_seen_by_driver"] > 0
    assert result["cpu_us_per_commit"]["transform-0"] > 0
    assert result["cpu_us_per_commit"]["redis"] > 0
    # One commit script per commit (no make-visible script without WAIT). Redis's command
    # counts and the services' commit counters are read one after the other, so commits
    # in flight at either end of the window make the ratio a little off 1.
    assert 0.9 <= result["redis_calls_per_commit"]["evalsha"] <= 1.1
    assert result["redis_command_us_per_commit"] > 0
    assert result["aof_bytes_per_commit"] > 0
    assert result["commit_seconds_mean_ms"] > 0
    assert result["process_seconds_mean_ms"] > 0
    assert result["refused"] == {}
    assert "fsyncs_per_commit" not in result


def test_commit_path_waits_for_a_redis_replica() -> None:
    result = json.loads(
        capacity("commit_path", "always", "1", "8", "1.5", "--warmup", "0.3", "--wait-replica")
    )
    assert result["wait_replica"] is True
    assert result["commits_per_second"] > 0
    assert result["redis_calls_per_commit"]["wait"] > 0
    assert result["unreplicated"] == 0


def test_commit_path_counts_fsyncs(tool) -> None:
    tool("strace")
    result = json.loads(
        capacity("commit_path", "always", "1", "8", "1.5", "--warmup", "0.5", "--strace-fsync")
    )
    assert result["fsyncs"] > 0
    assert result["fsyncs_per_commit"] > 0
    assert result["fsync_wall_us_mean"] > 0


def test_commit_script_reports_each_step() -> None:
    steps = [
        json.loads(line)
        for line in capacity("commit_script", "always", "0.5", "1", "4").splitlines()
    ]
    assert [step["committers"] for step in steps] == [1, 4]
    for step in steps:
        assert step["commits_per_second"] > 0
        assert step["redis_cpu_us_per_commit"] > 0
        assert step["redis_cpu_share"] > 0


def test_presence_path_reports_updates_and_their_costs() -> None:
    result = json.loads(capacity("presence_path", "always", "1000", "1000", "1"))
    assert result["updates_sent"] > 0
    assert result["events_read"] > 0
    assert result["cpu_us_per_update"]["presence"] > 0
    assert result["cpu_us_per_update"]["redis"] > 0
    calls: dict[str, Any] = result["redis_calls_per_update"]
    assert calls["xadd"] > 0
    assert calls["xreadgroup"] > 0


def test_presence_tracker_prints_a_row_per_session_count() -> None:
    lines = capacity("presence_tracker", "2000", "20000", pinned=False).splitlines()
    assert lines[0].startswith("| sessions |")
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [row[0].strip() for row in rows] == ["2,000", "20,000"]
    for row in rows:
        idle_flush, apply, per_publish, participants = (float(cell) for cell in row[1:])
        assert apply > 0, row
        assert per_publish > 0, row
        # Indexed: neither grows with the sessions (a scan of 20,000 took ~200 µs).
        assert 0 <= idle_flush < 50, row
        assert 0 <= participants < 50, row


def test_stack_costs_reports_a_load_scenario() -> None:
    result = json.loads(capacity("stack_costs", "smoke", "1.5"))
    assert result["scenario"]["name"] == "smoke"
    assert result["commits"] > 0
    assert result["gateway_frames_queued"] >= result["commits"]
    assert set(result["cpu_seconds"]) >= {"transform", "presence", "gateway-0", "redis"}
    for process in ("transform", "gateway-0", "redis"):
        assert result["cpu_us_per_commit"][process] > 0
    assert result["gateway_cpu_us_per_frame"] > 0
    # At least the commit script per commit; ~30 commits in the window, counted from two
    # snapshots that are not atomic (see test_commit_path_reports_commits_and_their_costs).
    assert result["redis_calls_per_commit"]["evalsha"] >= 0.8
    assert result["redis_command_us_per_commit"] > 0
    assert result["load"]["converged"] is True
