"""The local Redis Cluster harness (``collab_cli.redis_cluster``) and ``collab up
--redis-cluster``: real redis-server nodes, a real ``redis-cli --cluster create``, real
failover and resharding, and redis-py's own cluster client as the application would use it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.cluster

from collab_cli.main import build_parser
from collab_cli.redis_cluster import SLOTS, RedisCluster, parse_cluster_nodes
from collab_cli.redis_server import free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3 masters and 3 replicas, shared by the tests that leave it whole."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster") / "redis-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster for one test that kills or stops nodes."""
    cluster = RedisCluster(tmp_path / "redis-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def client_of(cluster: RedisCluster) -> redis.cluster.RedisCluster:
    """redis-py's cluster client, seeded with every running node."""
    ports = cluster.masters() + cluster.replicas()
    nodes = [redis.cluster.ClusterNode("127.0.0.1", port) for port in ports]
    return redis.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=10)


def node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def test_cluster_starts_with_every_slot_served(cluster: RedisCluster) -> None:
    masters, replicas = cluster.masters(), cluster.replicas()
    assert (len(masters), len(replicas)) == (3, 3)
    assert sorted(len(cluster.replicas(of=m)) for m in masters) == [1, 1, 1]
    assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.nodes[0].port}/0"
    assert cluster.nodes[0].port in masters
    assert sorted(url.rsplit(":", 1)[1] for url in cluster.node_urls) == sorted(
        f"{port}/0" for port in masters + replicas
    )
    for port in masters + replicas:
        with node(port) as client:
            info = client.execute_command("CLUSTER INFO")
            assert (info["cluster_state"], info["cluster_slots_assigned"]) == ("ok", str(SLOTS))
            view = parse_cluster_nodes(client.execute_command("CLUSTER", "NODES").decode())
        owned = [n.slots for n in view if n.is_master]
        assert sum(len(slots) for slots in owned) == SLOTS
        assert frozenset().union(*owned) == frozenset(range(SLOTS))


def test_hash_tags_put_documents_on_different_masters(cluster: RedisCluster) -> None:
    tags: dict[int, str] = {}
    for name in (chr(c) for c in range(ord("a"), ord("z") + 1)):
        tags.setdefault(cluster.master_of_slot(cluster.slot_of(f"{{d:{name}}}")), f"{{d:{name}}}")
    assert sorted(tags) == sorted(cluster.masters())
    client = client_of(cluster)
    try:
        for master, tag in tags.items():
            assert cluster.slot_of(f"{tag}:log") == cluster.slot_of(f"{tag}:snapshot")
            client.set(f"{tag}:snapshot", tag)
            client.xadd(f"{tag}:log", {"op": tag})
            assert client.get(f"{tag}:snapshot") == tag.encode()
            assert [fields for _, fields in client.xrange(f"{tag}:log")] == [{b"op": tag.encode()}]
            with node(master) as owner:  # on that master itself, not behind a redirect
                assert owner.get(f"{tag}:snapshot") == tag.encode()
    finally:
        client.close()


def test_move_slot_while_a_client_keeps_appending(cluster: RedisCluster) -> None:
    stream = "{d:moving}:log"
    slot = cluster.slot_of(stream)
    source = cluster.master_of_slot(slot)
    target = next(port for port in cluster.masters() if port != source)
    client = client_of(cluster)
    for n in range(250):  # more keys than one MIGRATE batch
        client.set(f"{{d:moving}}:k{n}", n)
    appended = 0
    stop = threading.Event()
    errors: list[BaseException] = []

    def append() -> None:
        nonlocal appended
        writer = client_of(cluster)
        try:
            while not stop.is_set():
                writer.xadd(stream, {"n": appended})
                appended += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            writer.close()

    thread = threading.Thread(target=append)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while appended < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = appended
        cluster.move_slot(slot, target)
        after = appended
        while appended < after + 100 and time.monotonic() < deadline + 30:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    assert after > before, "nothing was appended while the slot moved"
    assert appended >= after + 100, "appending stalled after the move"
    for port in cluster.masters() + cluster.replicas():
        with node(port) as member:
            view = parse_cluster_nodes(member.execute_command("CLUSTER", "NODES").decode())
        assert [n.port for n in view if slot in n.slots] == [target]
    with node(target) as owner, node(source) as former:
        assert owner.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 251
        assert former.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    entries = client.xrange(stream)
    assert [int(fields[b"n"]) for _, fields in entries] == list(range(appended))
    assert client.get("{d:moving}:k249") == b"249"
    client.close()


def test_killed_master_is_replaced_by_its_replica(own_cluster: RedisCluster) -> None:
    cluster = own_cluster
    stream = "{d:failover}:log"
    slot = cluster.slot_of(stream)
    dead = cluster.master_of_slot(slot)
    heirs = cluster.replicas(of=dead)
    client = client_of(cluster)
    client.xadd(stream, {"n": 0})
    client.close()
    with node(dead) as master:
        assert master.execute_command("WAIT", 1, 5000) == 1  # on the replica before the kill
    cluster.kill(dead)
    cluster.wait_for_failover(dead, timeout=90)
    heir = cluster.master_of_slot(slot)
    assert heir in heirs
    assert dead not in cluster.masters()
    client = client_of(cluster)
    client.xadd(stream, {"n": 1})
    assert [fields[b"n"] for _, fields in client.xrange(stream)] == [b"0", b"1"]
    client.close()
    cluster.start_node(dead)
    assert cluster.replicas(of=heir) == [dead]


def test_a_stopped_cluster_starts_again_from_its_folder(own_cluster: RedisCluster) -> None:
    client = client_of(own_cluster)
    client.set("{d:kept}:snapshot", "kept")
    client.close()
    own_cluster.stop()
    again = RedisCluster(own_cluster.data_dir)
    try:
        again.start()
        assert [n.port for n in again.nodes] == [n.port for n in own_cluster.nodes]
        client = client_of(again)
        assert client.get("{d:kept}:snapshot") == b"kept"
        client.close()
    finally:
        again.stop()
    with pytest.raises(ValueError, match=r"3 masters with 1 replica\(s\) each"):
        RedisCluster(own_cluster.data_dir, masters=4)


def test_a_cluster_needs_three_masters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="at least 3 masters"):
        RedisCluster(tmp_path, masters=2)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["up", "--redis-cluster", "2"])
    assert exit_.value.code == 2
    assert "--redis-cluster: a Redis Cluster needs at least 3 masters" in capsys.readouterr().err


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_collab_up_runs_a_redis_cluster_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "REDIS_URL"))}
    env.update(
        COLLAB_TRANSFORM_PORT=str(free_port()),
        COLLAB_PRESENCE_PORT=str(free_port()),
        COLLAB_GATEWAY_DRAIN_SECONDS="1",
    )
    output = tmp_path / "collab-up.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "collab_cli", "up", "--port", str(port), "--data-dir",
             str(data), "--redis-cluster", "3"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    pids = []
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C" not in output.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, output.read_text()
            time.sleep(0.1)
        text = output.read_text()
        url = re.search(
            r"redis\s+redis\+cluster://127\.0\.0\.1:(\d+)/0\s+\(local Redis Cluster", text
        )
        assert url, text
        with node(int(url.group(1))) as seed:
            assert seed.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
            view = parse_cluster_nodes(seed.execute_command("CLUSTER", "NODES").decode())
        assert sorted(n.is_master for n in view) == [False] * 3 + [True] * 3
        # The services run on it: the gateway gets ready and serves a document.
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        token = re.search(r"ey[\w-]+\.[\w-]+\.[\w-]+", output.read_text())
        assert token, output.read_text()
        document = httpx.get(
            f"http://127.0.0.1:{port}/v1/documents/on-a-cluster",
            headers={"Authorization": f"Bearer {token.group(0)}"},
            timeout=10,
        )
        assert document.json() == {"id": "on-a-cluster", "version": 0, "text": ""}
        for member in view:
            with node(member.port) as client:
                pids.append(client.info("server")["process_id"])
                assert client.config_get("dir")["dir"] == str(
                    data.resolve() / "redis-cluster" / f"node-{member.port}"
                )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, output.read_text()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
