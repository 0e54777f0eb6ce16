"""Fixtures that start the real system: a real redis-server and the real service processes.

``stack`` starts Redis plus one gateway, one edit-transform and one presence process
(more with ``stack_factory``), each a separate ``python -m collab_cli <service>`` process
on loopback, and stops everything after the test. Nothing is faked.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.integration.chaos import Chaos, FaultProxy

from collab_cli.redis_server import RedisServer, free_port
from collab_core.auth import TokenCodec

SECRET = "integration-test-secret-" + "x" * 24


@dataclass
class Service:
    name: str
    kind: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0

    def start(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collab_cli", self.kind],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = f"http://127.0.0.1:{self.port}/readyz"
            if b"address already in use" in self.log_path.read_bytes()[self.log_offset :]:
                # free_port() found the port free, but any socket (a client's, say) may
                # take it before the service binds it: move to another one.
                self.kill()
                self.port = free_port()
                self.env[f"COLLAB_{self.kind.upper()}_PORT"] = str(self.port)
                self.start()
                continue
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                # The answer must come from this process: another one (of a concurrent
                # run) may hold the port while this one has not yet noticed it cannot.
                if httpx.get(url, timeout=0.5).status_code == 200 and self.listens():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready: {self.log_path.read_text()[-3000:]}")

    def listens(self) -> bool:
        """Whether this service's process holds the listening socket on its port."""
        if self.process is None:
            return False
        fds = Path(f"/proc/{self.process.pid}/fd")
        try:
            inodes = {
                link[len("socket:[") : -1]
                for link in (os.readlink(fd) for fd in fds.iterdir())
                if link.startswith("socket:[")
            }
        except OSError:
            return False
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port == self.port and fields[3] == "0A" and fields[9] in inodes:
                    return True
        return False

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """``kill -9``: the process gets no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def restart(self) -> None:
        self.kill()
        self.start()
        self.wait_ready()


@dataclass
class Stack:
    root: Path
    redis: RedisServer
    services: list[Service] = field(default_factory=list)
    codec: TokenCodec = field(default_factory=lambda: TokenCodec(SECRET))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "REDIS_URL"))}
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "COLLAB_JWT_SECRET": SECRET,
                "COLLAB_INGRESS_SHARDS": "2",
                "COLLAB_GATEWAY_HOST": "127.0.0.1",
                "COLLAB_TRANSFORM_HOST": "127.0.0.1",
                "COLLAB_PRESENCE_HOST": "127.0.0.1",
                "COLLAB_PRESENCE_EXPIRE_CHECK_SECONDS": "1",
                "COLLAB_GATEWAY_LOAD_REPORT_SECONDS": "1",
                "COLLAB_GATEWAY_DRAIN_SECONDS": "1",
                "COLLAB_TRANSFORM_CLAIM_IDLE_MS": "1500",
                "COLLAB_GATEWAY_LOG_LEVEL": "warning",
                "COLLAB_TRANSFORM_LOG_LEVEL": "warning",
                "COLLAB_PRESENCE_LOG_LEVEL": "warning",
            }
        )
        env.update(extra)
        return env

    def add(self, kind: str, **extra: str) -> Service:
        port = free_port()
        prefix = {"gateway": "GATEWAY", "transform": "TRANSFORM", "presence": "PRESENCE"}[kind]
        index = sum(1 for s in self.services if s.kind == kind)
        name = f"{kind}-{index}"
        env = self.env(**{f"COLLAB_{prefix}_PORT": str(port)}, **extra)
        if kind == "transform":
            env.setdefault("COLLAB_TRANSFORM_CONSUMER", name)
        service = Service(name, kind, port, env, self.root / f"{name}.log")
        service.start()
        self.services.append(service)
        return service

    def start(self, gateways: int = 1, transforms: int = 1, **extra: str) -> None:
        for _ in range(transforms):
            self.add("transform", **extra)
        self.add("presence", **extra)
        for _ in range(gateways):
            self.add("gateway", **extra)
        for service in self.services:
            service.wait_ready()

    def of(self, kind: str) -> list[Service]:
        return [s for s in self.services if s.kind == kind]

    @property
    def gateway(self) -> Service:
        """The first gateway still running."""
        alive = [g for g in self.of("gateway") if g.process and g.process.poll() is None]
        return (alive or self.of("gateway"))[0]

    def ws_url(self, doc: str, gateway: Service | None = None) -> str:
        port = (gateway or self.gateway).port
        return f"ws://127.0.0.1:{port}/v1/collaborate/{doc}"

    def http(self, gateway: Service | None = None) -> str:
        return f"http://127.0.0.1:{(gateway or self.gateway).port}"

    def token(
        self, user: str = "u1", *, doc: str = "*", role: str = "editor", ttl: int = 3600
    ) -> str:
        return self.codec.mint(
            sub=user, name=user.title(), doc=doc, role=role, now=time.time(), ttl_seconds=ttl
        )

    def document(self, doc: str) -> dict[str, object]:
        response = httpx.get(
            f"{self.http()}/v1/documents/{doc}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=10,
        )
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def history(self, doc: str) -> list[dict[str, object]]:
        ops: list[dict[str, object]] = []
        start = 0
        while True:
            response = httpx.get(
                f"{self.http()}/v1/documents/{doc}/history",
                params={"from": start, "limit": 1000},
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=10,
            )
            response.raise_for_status()
            body = response.json()
            ops.extend(body["ops"])
            start += 1000
            if start >= body["version"]:
                return ops

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.redis.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {s.name}\n{s.log_path.read_text()[-4000:]}"
            for s in self.services
            if s.log_path.exists()
        )


@contextlib.contextmanager
def _stacks(root: Path, binary: str | None = None) -> Iterator[object]:
    """Stacks under ``root``; Redis is ``binary``, or the redis-server the CLI would pick."""
    stacks: list[Stack] = []

    def make(*, start: bool = True, appendfsync: str = "always", **kwargs: object) -> Stack:
        path = root / f"stack-{len(stacks)}-{secrets.token_hex(2)}"
        path.mkdir()
        redis = RedisServer(path / "redis", appendfsync=appendfsync, binary=binary)
        redis.start()
        stack = Stack(path, redis)
        stacks.append(stack)
        if start:
            stack.start(**kwargs)  # type: ignore[arg-type]
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop()


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[object]:
    """Builds stacks on demand; every one is stopped after the test."""
    with _stacks(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def module_stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Like ``stack_factory``, for stacks shared by a module's tests (one per document)."""
    with _stacks(tmp_path_factory.mktemp("stacks")) as make:
        yield make


@pytest.fixture
def stack(stack_factory: object) -> Stack:
    """Redis, one gateway, one edit-transform and one presence, started."""
    return stack_factory()  # type: ignore[operator, no-any-return]


ALPHABET = ["a", "b", "c", " ", "\n", "\r\n", "😀", "👍🏽", "e\u0301", "ß"]


def random_edit(text: str, rng: random.Random) -> list[object]:
    """A random insert or delete that fits ``text`` (code points, emoji included)."""
    if text and rng.random() < 0.35:
        start = rng.randrange(len(text))
        count = rng.randint(1, min(5, len(text) - start))
        return [start, {"d": count}] if start else [{"d": count}]
    position = rng.randint(0, len(text))
    insert = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
    return [position, insert] if position else [insert]


def _edit_once(client: object, rng: random.Random) -> None:
    client.edit(random_edit(client.text, rng))  # type: ignore[attr-defined]


@pytest.fixture
def edit():
    """``edit(client, rng)``: apply one random edit to a connected client's document."""
    return _edit_once


def check_acks_against_history(clients: list[object], history: list[dict[str, object]]) -> None:
    """Every ack a client received names an op of that client committed at that version."""
    by_version = {op["v"]: op for op in history}
    assert sorted(by_version) == list(range(len(history))), "history has gaps or forks"
    for client in clients:
        for op_id, v in client.acks:  # type: ignore[attr-defined]
            committed = by_version.get(v)
            assert committed is not None, f"ack for {op_id} at {v} not in history"
            assert committed["id"] == op_id
            assert committed["client"] == client.client_id  # type: ignore[attr-defined]
    ids = [(op["client"], op["id"]) for op in history]
    assert len(ids) == len(set(ids)), "an op was applied twice"


@pytest.fixture
def check_acks():
    """``check_acks(clients, history)``: see :func:`check_acks_against_history`."""
    return check_acks_against_history


@pytest.fixture
def fault_stack(stack_factory: object) -> object:
    """``fault_stack(transforms=({}, {}), gateways=2, **env)``: a started stack of two
    gateways and two edit-transform replicas; ``transforms`` holds each replica's own
    environment (a ``COLLAB_TRANSFORM_FAULT`` hook for one of them)."""

    def make(
        *, transforms: tuple[dict[str, str], ...] = ({}, {}), gateways: int = 2, **env: str
    ) -> Stack:
        stack: Stack = stack_factory(start=False)  # type: ignore[operator]
        for own in transforms:
            stack.add("transform", **{**env, **own})
        stack.add("presence", **env)
        for _ in range(gateways):
            stack.add("gateway", **env)
        for service in stack.services:
            service.wait_ready()
        return stack

    return make


@pytest.fixture
def chaos() -> object:
    """``chaos(stack, doc, urls=None, clients=6, **client_options)``: a :class:`Chaos` of
    recording clients making random edits (tests/integration/chaos.py); by default client
    ``i`` cycles through every gateway, starting at gateway ``i``."""

    def make(stack: Stack, doc: str, *, urls: object = None, **options: object) -> Chaos:
        gateways = stack.of("gateway")

        def every_gateway(i: int) -> list[str]:
            n = len(gateways)
            return [stack.ws_url(doc, gateways[(i + k) % n]) for k in range(n)]

        return Chaos(stack, doc, urls or every_gateway, edit=_edit_once, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def fault_proxy() -> Iterator[object]:
    """``fault_proxy(port)``: a started :class:`FaultProxy` to ``port``, stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(port: int, **options: int) -> FaultProxy:
        proxy = FaultProxy(port, **options).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
