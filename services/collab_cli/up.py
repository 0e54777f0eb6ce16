"""``collab up``: the whole system on one machine, with no setup.

Starts a private Redis (AOF on, ``appendfsync always``) with its data under the data
folder, unless ``REDIS_URL`` names an existing one, or with ``--redis-cluster N`` a local
Redis Cluster of N masters with a replica each (its ``redis+cluster://`` URL tells the
services to use a cluster client); then gateway, edit-transform and presence as separate
processes, restarted when they die; prints the demo URL and ready-made tokens; on Ctrl-C
or SIGTERM stops the services (the gateway drains), then Redis.

This is a local, explicitly insecure development mode: the gateway it starts offers an
endpoint that mints tokens for any name typed into the demo page.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from collab_cli.redis_cluster import RedisCluster
from collab_cli.redis_server import RedisServer
from collab_core.auth import TokenCodec

SERVICES = ("gateway", "transform", "presence")
RESTART_BACKOFF_MAX = 5.0


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = field(default=0.2)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL)
        self.next_start = 0.0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _secret(data_dir: Path) -> tuple[str, bool]:
    """The JWT secret: ``COLLAB_JWT_SECRET``, else one kept in the data folder."""
    from_env = os.environ.get("COLLAB_JWT_SECRET")
    if from_env:
        return from_env, False
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip(), True
    value = secrets.token_urlsafe(48)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value, True


class Stack:
    """The processes of one local system, supervised."""

    def __init__(
        self,
        *,
        port: int,
        data_dir: Path,
        appendfsync: str = "always",
        redis_url: str | None = None,
        cluster_masters: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis: RedisServer | RedisCluster | None = None
        self.redis_url = redis_url
        self.cluster_masters = cluster_masters
        self.appendfsync = appendfsync
        self.secret, self.secret_from_file = _secret(self.data_dir)
        self.extra_env = extra_env or {}
        self.children: list[Child] = []
        self.stopping = False

    def start(self) -> None:
        if self.redis_url is None:
            self.redis = self._own_redis()
            self.redis.start()
            self.redis_url = self.redis.url
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "COLLAB_JWT_SECRET": self.secret,
            "COLLAB_GATEWAY_PORT": str(self.port),
            "COLLAB_GATEWAY_HOST": os.environ.get("COLLAB_GATEWAY_HOST", "127.0.0.1"),
            "COLLAB_GATEWAY_DEV_TOKENS": "true",
            "COLLAB_TRANSFORM_PORT": os.environ.get("COLLAB_TRANSFORM_PORT", str(self.port + 1)),
            "COLLAB_TRANSFORM_HOST": "127.0.0.1",
            "COLLAB_PRESENCE_PORT": os.environ.get("COLLAB_PRESENCE_PORT", str(self.port + 2)),
            "COLLAB_PRESENCE_HOST": "127.0.0.1",
            **self.extra_env,
        }
        if isinstance(self.redis, RedisCluster):
            # Acknowledge an op only once a replica has it: a failover then loses none.
            env.setdefault("COLLAB_TRANSFORM_WAIT_REPLICAS", "1")
        for name in SERVICES:
            child = Child(name, [sys.executable, "-m", "collab_cli", name], env)
            child.start()
            self.children.append(child)

    def _own_redis(self) -> RedisServer | RedisCluster:
        if self.cluster_masters:
            return RedisCluster(
                self.data_dir / "redis-cluster",
                masters=self.cluster_masters,
                appendfsync=self.appendfsync,
            )
        return RedisServer(self.data_dir / "redis", appendfsync=self.appendfsync)

    def supervise_once(self, now: float) -> None:
        for child in self.children:
            if child.alive() or self.stopping:
                continue
            if child.next_start == 0.0:
                code = child.process.returncode if child.process else None
                print(f"collab up: {child.name} exited ({code}); restarting", file=sys.stderr)
                child.next_start = now + child.backoff
                child.backoff = min(child.backoff * 2, RESTART_BACKOFF_MAX)
            elif now >= child.next_start:
                child.restarts += 1
                child.start()

    def stop(self, timeout: float = 20.0) -> None:
        self.stopping = True
        for child in self.children:
            if child.alive() and child.process is not None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if self.redis is not None:
            self.redis.stop()

    def _redis_line(self) -> str:
        if isinstance(self.redis, RedisCluster):
            ports = " ".join(str(node.port) for node in self.redis.nodes)
            return (
                f"  redis      {self.redis_url}  (local Redis Cluster: "
                f"{self.redis.master_count} masters with a replica each, nodes on {ports}; "
                f"data in {self.redis.data_dir})"
            )
        return f"  redis      {self.redis_url}  (data in {self.data_dir})"

    def banner(self) -> str:
        codec = TokenCodec(self.secret)
        now = time.time()
        base = f"http://127.0.0.1:{self.port}"
        alice = codec.mint(
            sub="alice", name="Alice", doc="*", role="editor", now=now, ttl_seconds=86400
        )
        bob = codec.mint(sub="bob", name="Bob", doc="*", role="editor", now=now, ttl_seconds=86400)
        viewer = codec.mint(
            sub="vic", name="Vic", doc="*", role="viewer", now=now, ttl_seconds=86400
        )
        secret_note = (
            f"kept in {self.data_dir / 'jwt-secret'}"
            if self.secret_from_file
            else "from COLLAB_JWT_SECRET"
        )
        return "\n".join(
            [
                "",
                f"collab is up: {base}/",
                "  (local development mode: insecure, the page mints tokens on request)",
                self._redis_line(),
                f"  websocket  ws://127.0.0.1:{self.port}/v1/collaborate/<document>",
                f"  JWT secret {secret_note}",
                "  tokens (24 h, any document):",
                f"    alice (editor)  {alice}",
                f"    bob   (editor)  {bob}",
                f"    vic   (viewer)  {viewer}",
                f"  try: {base}/d/welcome#token={alice}",
                "Ctrl-C stops everything.",
                "",
            ]
        )


def run(
    *,
    port: int,
    data_dir: Path,
    appendfsync: str,
    redis_cluster: int | None = None,
) -> int:
    """Run until Ctrl-C or SIGTERM; ``redis_cluster`` (masters) asks for a local Redis
    Cluster, which wins over ``REDIS_URL`` because it is the more explicit request."""
    stack = Stack(
        port=port,
        data_dir=data_dir,
        appendfsync=appendfsync,
        redis_url=None if redis_cluster else os.environ.get("REDIS_URL") or None,
        cluster_masters=redis_cluster,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while True:
            stack.supervise_once(time.monotonic())
            time.sleep(0.25)
    except KeyboardInterrupt:
        print("collab up: stopping", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
    return 0
