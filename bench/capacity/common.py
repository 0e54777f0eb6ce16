"""What the capacity measurements share: a pinned Redis, services started as processes,
their Prometheus metrics, and Redis's per-command counts.

Like ``bench.stack`` (whose helpers it uses), it pins processes with ``taskset`` and does
not depend on pytest.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.stack import pin, raise_file_limit
from collab_cli.redis_server import RedisServer, free_port

#: Ingress shards in every measurement (the default of ``COLLAB_INGRESS_SHARDS``).
SHARDS = 4


def add_core_options(parser: argparse.ArgumentParser) -> None:
    """``--server-cores`` (Redis and the services) and ``--driver-cores`` (this process)."""
    parser.add_argument(
        "--server-cores", default="0", help="cores for Redis and the services (0; '' = any)"
    )
    parser.add_argument("--driver-cores", default="1", help="cores for this driver (1; '' = any)")


def pin_self(cores: str) -> None:
    """Pin this process to ``cores`` (comma-separated); empty: leave it unpinned."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})


def pin_pid(pid: int, cores: str) -> None:
    if cores and shutil.which("taskset"):
        subprocess.run(["taskset", "-pc", cores, str(pid)], check=True, capture_output=True)


def start_redis(
    data_dir: Path, appendfsync: str, cores: str, extra_args: tuple[str, ...] = ()
) -> RedisServer:
    """A redis-server with its AOF in ``data_dir``, pinned to ``cores``."""
    server = RedisServer(data_dir, appendfsync=appendfsync, extra_args=extra_args)
    server.start()
    pin_pid(redis_pid(server), cores)
    return server


def redis_pid(server: RedisServer) -> int:
    assert server.process is not None, "not started"
    return server.process.pid


def service_env(redis_url: str) -> dict[str, str]:
    """This process's environment without any ``COLLAB_*`` setting, pointed at Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "REDIS_URL"))}
    env.update(
        REDIS_URL=redis_url,
        COLLAB_JWT_SECRET=secrets.token_urlsafe(48),
        COLLAB_INGRESS_SHARDS=str(SHARDS),
    )
    return env


@dataclass
class Service:
    """One service process (``collab <kind>``) and its HTTP port."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


def start_service(
    kind: str, name: str, env: dict[str, str], cores: str, logs: Path, **settings: str
) -> Service:
    """Start ``collab <kind>`` (``transform`` or ``presence``) pinned to ``cores``;
    ``settings`` are its own ``COLLAB_<KIND>_*`` variables, without the prefix."""
    prefix = f"COLLAB_{kind.upper()}_"
    port = free_port()
    own = {"HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warning", **settings}
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [*pin(cores), sys.executable, "-m", "collab_cli", kind],
            env={**env, **{prefix + k: v for k, v in own.items()}},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_file_limit,
        )
    return Service(name, popen, port, log)


def wait_ready(service: Service, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.popen.poll() is not None:
            raise RuntimeError(f"{service.name} exited: {service.log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{service.port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} not ready after {timeout} s")


def stop_services(services: list[Service], timeout: float = 20) -> None:
    """SIGTERM each, then wait; one that outlives ``timeout`` is killed and named on
    stderr (a replica that cannot shut down is a finding, not noise)."""
    for service in services:
        if service.popen.poll() is None:
            service.popen.send_signal(signal.SIGTERM)
    for service in services:
        try:
            service.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{service.name} did not exit within {timeout} s of SIGTERM", file=sys.stderr)
            service.popen.kill()
            service.popen.wait()


def scrape(port: int, prefixes: tuple[str, ...]) -> dict[str, float]:
    """The samples of a service's /metrics whose names start with one of ``prefixes``,
    labels included in the name; histogram buckets and ``_created`` left out."""
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if not line.startswith(prefixes) or "_bucket{" in line:
            continue
        name, _, value = line.rpartition(" ")
        if not name.partition("{")[0].endswith("_created"):
            out[name] = float(value)
    return out


def difference(
    before: dict[str, float], after: dict[str, float], *, keep_zero: bool = False
) -> dict[str, float]:
    """``after - before`` per key of ``after``; without ``keep_zero``, only the keys that
    changed."""
    out = {}
    for key, value in after.items():
        changed = value - before.get(key, 0)
        if changed or keep_zero:
            out[key] = changed
    return out


async def command_stats(redis: Redis) -> tuple[dict[str, float], dict[str, float]]:
    """Calls and microseconds spent per command since Redis started (``INFO commandstats``)."""
    return parse_command_stats(await redis.info("commandstats"))


def parse_command_stats(stats: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(calls, usec) per command from the parsed reply of ``INFO commandstats``."""
    calls = {k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in stats.items()}
    usec = {k.removeprefix("cmdstat_"): float(v["usec"]) for k, v in stats.items()}
    return calls, usec
