"""The presence consumer: presence ingress in, roster and per-document events out.

The tracker holds sessions in memory, so every update of one document must reach the same
replica: replicas split the ingress shards between them (partition ``p`` of ``n`` owns the
shards ``s`` with ``s % n == p``), and a document's updates all go to its one shard. The
roster is also kept in Redis (``collab:{d:<id>}:roster``, listed in ``collab:rosters``)
for welcome messages, the participants endpoint, and to restore the tracker after a
restart.

A process owns a shard only while it holds the shard's lease (``presence_lease``: its
consumer name, with a time to live it keeps renewing). When the partitions are re-split
(a StatefulSet of presence pods scaled and rolled one pod at a time), a new pod can start
while an old one still reads a shard it will own; it waits for that lease, which the old
pod gives up when it stops (or which expires if it was killed), so a document's updates
never go to two trackers at once. A process restarted under its own name takes its
leases back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from redis.asyncio import Redis

from collab_core import fanout, keys
from collab_core.ingress import PresenceUpdate
from collab_core.service import BLOCK_MS, REDIS_ERRORS, ensure_group, report_backlog, run_all
from collab_presence import metrics
from collab_presence.tracker import Action, DropParticipant, Publish, SaveParticipant, Tracker

log = logging.getLogger("collab.presence")

ROSTERS = f"{keys.PREFIX}:rosters"
#: Events kept per document presence stream (gateways read only the newest).
STREAM_MAXLEN = 1000

_decode = msgspec.json.Decoder().decode

#: A lease outlives its holder by this long when the holder is killed; renewed 3x as often.
LEASE_MS = 10_000
#: How often a process waiting for a lease asks again.
LEASE_POLL_SECONDS = 0.5

# Take the lease when nobody holds it or we do (and extend it): a check-and-set.
_TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_DROP_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another process holds a lease this one had (it was frozen past the lease's life)."""


class Worker:
    def __init__(
        self,
        redis: Redis,
        *,
        consumer: str,
        shards: int,
        partition: int = 0,
        partitions: int = 1,
        flush_ms: int = 40,
        expire_check_seconds: float = 5.0,
        block_ms: int = BLOCK_MS,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.shards = shards
        self.owned = [n for n in range(shards) if n % partitions == partition]
        if not self.owned:
            raise ValueError(f"partition {partition} of {partitions} owns none of {shards} shards")
        self.partitions = partitions
        self.streams = [keys.presence_ingress(n) for n in self.owned]
        self.flush_seconds = flush_ms / 1000
        self.expire_check_seconds = expire_check_seconds
        self.block_ms = block_ms
        self.lease_ms = lease_ms
        self.leases = [keys.presence_lease(n) for n in self.owned]
        self._take_lease = redis.register_script(_TAKE_LEASE)
        self._drop_lease = redis.register_script(_DROP_LEASE)
        self.tracker = Tracker()

    async def run(self) -> None:
        await ensure_group(self.redis, self.streams, keys.PRESENCE_GROUP)
        self.tracker = Tracker()
        try:
            await self._take_leases()
            await self._restore()
            for stream in self.streams:
                await self._adopt_pending(stream)
                await self._consume(stream, "0")
            # The flush and expire loops end only on an error (Redis), and their changes
            # to the tracker may not have reached Redis: everything ends then, so that the
            # supervisor restarts and restores the roster. One blocking read per shard:
            # the shards are in different slots of a Redis Cluster.
            await run_all(
                *(self._consume_forever(stream) for stream in self.streams),
                self._flush_loop(),
                self._expire_loop(),
                self._renew_leases(),
                report_backlog(
                    self.redis,
                    self.streams,
                    keys.PRESENCE_GROUP,
                    pending=metrics.STREAM_PENDING,
                    lag=metrics.STREAM_LAG,
                    oldest=metrics.STREAM_OLDEST_PENDING,
                ),
            )
        finally:
            metrics.SHARDS_OWNED.set(0)
            # Stopping, or restarting after an error: the next owner may start now. A
            # process killed outright leaves its leases to expire instead.
            with contextlib.suppress(*REDIS_ERRORS):
                for lease in self.leases:
                    await self._drop_lease(keys=[lease], args=[self.consumer])

    async def _take_leases(self) -> None:
        """Wait until this process holds the lease of every shard it owns."""
        held: set[str] = set()
        logged = False
        while True:
            for lease in self.leases:
                if await self._take_lease(keys=[lease], args=[self.consumer, self.lease_ms]):
                    held.add(lease)
            metrics.SHARDS_OWNED.set(len(held))
            if len(held) == len(self.leases):
                return
            if not logged:
                missing = len(self.leases) - len(held)
                log.info("waiting for %d shard(s) another presence process owns", missing)
                logged = True
            await asyncio.sleep(LEASE_POLL_SECONDS)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            for lease in self.leases:
                if not await self._take_lease(keys=[lease], args=[self.consumer, self.lease_ms]):
                    raise LeaseLost(lease)

    async def _consume_forever(self, stream: str) -> None:
        while True:
            await self._consume(stream, ">")

    async def _adopt_pending(self, stream: str) -> None:
        """Take over the entries of the shard another consumer read and never acknowledged.

        A shard has one owner at a time, so whatever is pending on it belongs to a previous
        owner: this process under another name, or a partition that no longer exists after
        the partitions were re-split (a StatefulSet scaled down). Left alone, its joins and
        leaves would never reach a roster.
        """
        start = "0-0"
        while True:
            response: Any = await self.redis.xautoclaim(
                stream,
                keys.PRESENCE_GROUP,
                self.consumer,
                min_idle_time=0,
                start_id=start,
                count=500,
            )
            # (The JUSTID form would do, but redis-py then drops the cursor.)
            cursor = response[0].decode() if isinstance(response[0], bytes) else response[0]
            if cursor == "0-0":
                return
            start = cursor

    async def _restore(self) -> None:
        now = time.time()
        docs: Any = await self.redis.smembers(ROSTERS)
        for raw_doc in docs:
            doc = raw_doc.decode()
            if keys.shard_of(doc, self.shards) % self.partitions != self.owned[0] % self.partitions:
                continue  # another partition's document
            roster: Any = await self.redis.hgetall(keys.roster(doc))
            for session, participant in roster.items():
                data = _decode(participant)
                gateway = data.get("gateway", "") if isinstance(data, dict) else ""
                self.tracker.restore(doc, session.decode(), participant, gateway, now)
        metrics.PARTICIPANTS.set(len(self.tracker.sessions))

    async def _consume(self, stream: str, start: str) -> None:
        cursor = start
        while True:
            response: Any = await self.redis.xreadgroup(
                keys.PRESENCE_GROUP,
                self.consumer,
                {stream: cursor},
                count=500,
                block=self.block_ms if start == ">" else None,
            )
            entries = response[0][1] if response else []
            actions: list[Action] = []
            now = time.time()
            for entry_id, fields in entries:
                if not fields:
                    continue
                try:
                    update = PresenceUpdate.from_stream(fields)
                except (KeyError, ValueError) as exc:
                    log.error("malformed presence entry %s: %s", entry_id, exc)
                    continue
                metrics.UPDATES.labels(update.kind).inc()
                actions.extend(self.tracker.apply(update, now))
            await self._carry_out(actions)
            if entries:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for entry_id, _ in entries:
                        pipe.xack(stream, keys.PRESENCE_GROUP, entry_id)
                        pipe.xdel(stream, entry_id)
                    await pipe.execute()
            if start == ">" or not entries:
                return
            cursor = entries[-1][0]

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self._carry_out(self.tracker.flush())

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expire_check_seconds)
            gateways = sorted(self.tracker.gateways())
            if not gateways:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for gateway in gateways:
                    pipe.exists(keys.gateway_load(gateway))
                found = await pipe.execute()
            alive = {g for g, exists in zip(gateways, found, strict=True) if exists}
            actions = self.tracker.expire(alive)
            metrics.EXPIRED.inc(sum(isinstance(a, DropParticipant) for a in actions))
            await self._carry_out(actions)

    async def _carry_out(self, actions: Iterable[Action]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        published: set[str] = set()
        for action in actions:
            count += 1
            if isinstance(action, Publish):
                published.add(action.doc)
                pipe.xadd(
                    keys.presence(action.doc),
                    {"session": action.session, "msg": action.frame},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            elif isinstance(action, SaveParticipant):
                pipe.hset(keys.roster(action.doc), action.session, action.participant)
                pipe.sadd(ROSTERS, action.doc)
            else:
                pipe.hdel(keys.roster(action.doc), action.session)
                if self.tracker.participants(action.doc) == 0:
                    pipe.srem(ROSTERS, action.doc)
        if count:
            await pipe.execute()
        if published:
            await fanout.notify(self.redis, await fanout.live_hosts(self.redis, published))
        metrics.PARTICIPANTS.set(len(self.tracker.sessions))
