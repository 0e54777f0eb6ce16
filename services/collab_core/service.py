"""Running a back-end service: its worker loop, health endpoints and metrics.

edit-transform and presence are each one long-running worker coroutine plus a small
HTTP listener for ``/healthz``, ``/readyz`` and ``/metrics``. This module runs the worker
under supervision: a lost Redis connection is retried with backoff (the worker restarts
from its consumer group's pending entries, so nothing is skipped), and a store whose
epoch changed stops the worker for good (``/readyz`` stays 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, cast

import prometheus_client
import uvicorn
from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterError, RedisError, ResponseError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collab_core.store import Epoch, StoreLost

log = logging.getLogger("collab.service")

#: What a lost, refused or frozen Redis connection raises, and the error replies of a
#: Redis that refuses writes for now: MISCONF (its AOF write failed), READONLY (a failover
#: demoted it), NOREPLICAS (min-replicas-to-write), OOM. Treated alike: not ready, retry.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    # A cluster without a node for a slot (mid-failover) or whose topology is being
    # refreshed; MOVED and ASK are followed by the client itself.
    ClusterError,
    SlotNotCoveredError,
    RedisTimeoutError,
    ResponseError,
    ConnectionError,
    TimeoutError,
    OSError,
)
#: Longest blocking read (XREAD / XREADGROUP BLOCK); stays below the socket timeout.
BLOCK_MS = 2000
#: How often a consumer service measures its consumer group's backlog.
BACKLOG_SECONDS = 5.0


async def ensure_group(redis: Redis, streams: list[str], group: str) -> None:
    """Create consumer ``group`` on each stream (and the stream), unless it exists."""
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def report_backlog(
    redis: Redis,
    streams: Sequence[str],
    group: str,
    *,
    pending: prometheus_client.Gauge,
    lag: prometheus_client.Gauge,
    oldest: prometheus_client.Gauge,
    interval: float = BACKLOG_SECONDS,
) -> None:
    """Set the gauges of ``group``'s backlog on each stream every ``interval`` seconds.

    The gauges take the labels ``stream`` and ``group``. Every consumer deletes the entries
    it acknowledges, so a stream holds exactly its pending entries (delivered, not yet
    acknowledged) and the ones not yet delivered: the lag is the length minus the pending
    count. (XINFO GROUPS has no lag before Redis 7, nor a valid one after XDEL.) The age of
    the oldest pending entry comes from its id, the milliseconds at which it was added.
    """
    while True:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xlen(stream)
                    pipe.xpending(stream, group)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            # The worker itself notices a lost Redis; here a miss only delays a sample.
            log.warning("backlog of %s not measured: %s", group, exc)
        else:
            now = time.time()
            for stream, length, summary in zip(streams, replies[::2], replies[1::2], strict=True):
                count = int(summary["pending"])
                pending.labels(stream, group).set(count)
                lag.labels(stream, group).set(max(0, int(length) - count))
                first = summary["min"]
                age = now - int(first.split(b"-")[0]) / 1000 if count and first else 0.0
                oldest.labels(stream, group).set(max(0.0, age))
        await asyncio.sleep(interval)


async def run_all(*work: Coroutine[Any, Any, None]) -> None:
    """Run coroutines that should never end, until one raises: then cancel the others
    and raise its exception (a bare one, which ``Supervisor`` can catch, not a group)."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: Connections to Redis per process (per node of a cluster). A burst of work (hundreds
#: of clients joining at once) waits for a free connection instead of failing, as the
#: default pool would.
MAX_CONNECTIONS = 64
#: URL schemes that name a Redis Cluster explicitly (any node of it).
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
_TIMEOUTS: dict[str, Any] = {
    # A reply slower than this means Redis is frozen or gone; blocking reads wait at most
    # BLOCK_MS, well inside it.
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
    "socket_keepalive": True,
}


def connect(url: str) -> Redis:
    """A Redis client for ``url`` with the timeouts every service uses.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) is a Redis Cluster reached
    through that node; a plain ``redis://`` URL is also taken for a cluster when the
    server says it is one (``INFO cluster``, asked once, here). The services use only
    commands and scripts that touch one slot, and pipelines without transactions, which
    redis-py's cluster client routes node by node: it is handed out as a ``Redis``.
    """
    if url.startswith(CLUSTER_SCHEMES):
        return _cluster(url.replace("+cluster", "", 1))
    if _is_cluster_node(url):
        return _cluster(url)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=10, retry_on_timeout=False, **_TIMEOUTS
    )
    return Redis(connection_pool=pool)


async def close(redis: Redis) -> None:
    """Close a client from :func:`connect` and its connections."""
    if isinstance(redis, RedisCluster):
        await redis.aclose()
    else:
        await redis.aclose(close_connection_pool=True)


#: Connections per node with a cluster client. redis-py's cluster pool does not wait for a
#: free connection: past the limit it raises a connection error, on which the client
#: closes every connection to every node, in use or not. So the limit is set far above
#: what a burst needs, and Redis's maxclients (10,000 by default) is the real bound.
CLUSTER_MAX_CONNECTIONS = 1024


def _cluster(url: str) -> Redis:
    client = RedisCluster.from_url(url, max_connections=CLUSTER_MAX_CONNECTIONS, **_TIMEOUTS)
    return cast(Redis, client)


def _is_cluster_node(url: str) -> bool:
    probe = SyncRedis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return int(probe.info("cluster").get("cluster_enabled", 0)) == 1
    except (RedisError, OSError) as exc:
        log.warning(
            "could not ask %s whether it is a cluster (%s): taken for a single Redis; "
            "name a cluster with redis+cluster:// to be sure",
            _without_password(url),
            exc,
        )
        return False
    finally:
        probe.close()


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{host}" if at else url


class Supervisor:
    """Runs ``work`` until cancelled, restarting it after Redis faults.

    Also checks the store epoch every ``epoch_check_seconds``; on a change it cancels
    the work and stays down (``healthy`` False, ``lost`` True).
    """

    def __init__(
        self,
        redis: Redis,
        work: Callable[[], Coroutine[Any, Any, None]],
        *,
        name: str,
        on_restart: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        epoch_check_seconds: float = 2.0,
    ) -> None:
        self.redis = redis
        self.work = work
        self.name = name
        self.on_restart = on_restart
        self.on_lost = on_lost
        self.epoch = Epoch(redis)
        self.epoch_check_seconds = epoch_check_seconds
        self.connected = False
        self.lost = False

    @property
    def ready(self) -> bool:
        return self.connected and not self.lost

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                if self.epoch.value is None:
                    await self.epoch.adopt()
                else:
                    await self.epoch.verify()
                self.connected = True
                delay = 0.1
                await self._run_once()
            except StoreLost as exc:
                self.lost = True
                self.connected = False
                log.critical("%s stopped: %s", self.name, exc)
                if self.on_lost is not None:
                    self.on_lost()
                return
            except REDIS_ERRORS as exc:
                self.connected = False
                log.warning("%s: redis unavailable (%s); retrying in %.1fs", self.name, exc, delay)
                if self.on_restart is not None:
                    self.on_restart()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                # Anything else is a bug or a client library in a bad state (redis-py's
                # cluster client can fail a command with a RuntimeError on a connection it
                # closed itself). A work loop that ended would leave a live process that
                # does nothing: restart it, not ready meanwhile.
                self.connected = False
                log.exception("%s failed; restarting in %.1fs", self.name, delay)
                if self.on_restart is not None:
                    self.on_restart()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _run_once(self) -> None:
        work = asyncio.create_task(self.work(), name=f"{self.name}-work")
        try:
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=self.epoch_check_seconds)
                if not done:
                    await self.epoch.verify()
            work.result()
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                    await work


def health_app(supervisor: Supervisor) -> Starlette:
    """The HTTP listener of a back-end service, running ``supervisor`` in its lifespan."""

    async def healthz(_: Request) -> Response:
        # Alive even when the store was lost: a restart would adopt the new, empty store
        # and serve documents from version 0, which is what refusing prevents.
        return JSONResponse({"status": "store lost" if supervisor.lost else "ok"})

    async def readyz(_: Request) -> Response:
        if supervisor.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics(_: Request) -> Response:
        return Response(
            prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(supervisor.run(), name=f"{supervisor.name}-supervisor")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await close(supervisor.redis)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


def serve(app: Starlette, *, host: str, port: int, log_level: str) -> None:
    """Run ``app`` with uvicorn on uvloop until SIGTERM or SIGINT."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
