"""The server side of a benchmark run: Redis and the services as processes pinned to cores.

Separate from the test harness on purpose: a benchmark pins processes with ``taskset``,
reads their CPU time and peak memory from ``/proc``, and must not depend on pytest.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from collab_cli.redis_server import RedisServer, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB, from /proc/<pid>/status."""
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    return rss, peak


def raise_file_limit() -> None:
    """Allow as many open sockets as the hard limit permits (10,000 connections need it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(cores: str | None) -> list[str]:
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class ServerStack:
    """Redis, edit-transform, presence and ``gateways`` gateways, all pinned to ``cores``."""

    root: Path
    cores: str | None = "0"
    gateways: int = 1
    appendfsync: str = "always"
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    processes: list[Process] = field(default_factory=list)
    redis: RedisServer | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.root / "redis", appendfsync=self.appendfsync)
        self.redis.start()
        if self.cores and shutil.which("taskset") and self.redis.process is not None:
            subprocess.run(["taskset", "-pc", self.cores, str(self.redis.process.pid)],
                           check=True, capture_output=True)  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "REDIS_URL"))}
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "COLLAB_JWT_SECRET": self.secret,
                "COLLAB_GATEWAY_HOST": "127.0.0.1",
                "COLLAB_TRANSFORM_HOST": "127.0.0.1",
                "COLLAB_PRESENCE_HOST": "127.0.0.1",
                "COLLAB_GATEWAY_LOG_LEVEL": "warning",
                "COLLAB_TRANSFORM_LOG_LEVEL": "warning",
                "COLLAB_PRESENCE_LOG_LEVEL": "warning",
                # The generator opens many connections as one user.
                "COLLAB_GATEWAY_CONNECTIONS_PER_USER": "100000",
                **(extra_env or {}),
            }
        )
        kinds = ["transform", "presence"] + ["gateway"] * self.gateways
        for n, kind in enumerate(kinds):
            port = free_port()
            prefix = {"gateway": "GATEWAY", "transform": "TRANSFORM", "presence": "PRESENCE"}[kind]
            log = (self.root / f"{kind}-{n}.log").open("ab")
            popen = subprocess.Popen(
                [*pin(self.cores), sys.executable, "-m", "collab_cli", kind],
                env={**env, f"COLLAB_{prefix}_PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=raise_file_limit,
            )
            log.close()
            name = f"gateway-{n - 2}" if kind == "gateway" else kind
            self.processes.append(Process(name, popen, port))
        for process in self.processes:
            self._wait_ready(process)

    def _wait_ready(self, process: Process, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited; see {self.root}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{process.port}/readyz", timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{process.name} not ready")

    @property
    def gateway_ports(self) -> list[int]:
        return [p.port for p in self.processes if p.name.startswith("gateway") and p.port]

    def pids(self) -> dict[str, int]:
        pids = {p.name: p.pid for p in self.processes}
        if self.redis is not None and self.redis.process is not None:
            pids["redis"] = self.redis.process.pid
        return pids

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    def memory(self) -> dict[str, tuple[int, int]]:
        return {name: memory_kib(pid) for name, pid in self.pids().items()}

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.popen.wait(20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
        if self.redis is not None:
            self.redis.stop()
