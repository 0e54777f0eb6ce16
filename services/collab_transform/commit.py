"""Appending one op to a document's log: the atomic check-and-append on the version.

The Lua script makes every check before its first write (Redis scripts do not roll
back): the head must still be at the version the worker transformed against, so two
replicas, or a paused worker that wakes after its entry was claimed, can never both
commit a version (DESIGN.md invariant 4). The log entry id ``<v+1>-0`` is a second line
of defence: XADD refuses an id that is not above the stream's last one. With Redis's
``appendfsync always`` the script's reply means the op is on disk.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from collab_core import keys, ot
from collab_core.store import DocumentStore, LogEntry

# KEYS: head, log, snapshot key (for the new version), snapshot index, op id index,
# hosting gateways. ARGV: expected head version, new length, snapshot text ('' for none),
# op id index field, the time now, '1' if the op is visible at once ('0': once
# replicated, see Committer.publish), then the log entry's field/value pairs.
# Returns {committed (0/1), head before, gateways hosting the document (when committed)}.
_COMMIT = """
local head = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[1])
if head ~= expected then
  return {0, head}
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], (head + 1) .. '-0', unpack(fields))
redis.call('HSET', KEYS[1], 'version', head + 1, 'length', ARGV[2])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'visible', head + 1)
else
  redis.call('HSETNX', KEYS[1], 'visible', head)
end
redis.call('HSET', KEYS[5], ARGV[4], head)
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[4], head + 1, head + 1)
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[5])
return {1, head, redis.call('ZRANGE', KEYS[6], 0, -1)}
"""


# KEYS: head. ARGV: a version. Raises the visible version to it, never lowers it (replicas
# finish their waits in any order).
_RAISE_VISIBLE = """
local visible = tonumber(redis.call('HGET', KEYS[1], 'visible') or '0')
if tonumber(ARGV[1]) > visible then
  redis.call('HSET', KEYS[1], 'visible', ARGV[1])
  return tonumber(ARGV[1])
end
return visible
"""


@dataclass(slots=True)
class DocumentView:
    """What a worker knows of one document: head, text, and the latest ops."""

    version: int
    text: str
    recent: deque[LogEntry] = field(default_factory=deque)

    def since(self, version: int) -> list[LogEntry] | None:
        """The cached ops with ``v >= version``, or None if the cache does not reach back."""
        if version == self.version:
            return []
        if not self.recent or self.recent[0].v > version:
            return None
        start = version - self.recent[0].v
        return list(self.recent)[start:]

    def advance(self, entry: LogEntry, text: str, keep: int) -> None:
        self.recent.append(entry)
        while len(self.recent) > keep:
            self.recent.popleft()
        self.version = entry.v + 1
        self.text = text


class Committer:
    """Loads document views and appends ops with the check-and-append script."""

    def __init__(
        self,
        redis: Redis,
        *,
        snapshot_every: int = 100,
        keep_recent: int = 1000,
        max_cached_documents: int = 1000,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._raise_visible = redis.register_script(_RAISE_VISIBLE)
        self.store = DocumentStore(redis)
        self.snapshot_every = snapshot_every
        self.keep_recent = keep_recent
        self.max_cached_documents = max_cached_documents
        self._script = redis.register_script(_COMMIT)
        self._views: dict[str, DocumentView] = {}

    async def view(self, document_id: str) -> DocumentView:
        """The cached view of a document, loaded from Redis on first use."""
        view = self._views.pop(document_id, None)
        if view is None:
            version, text = await self.store.current(document_id, committed=True)
            view = DocumentView(version, text)
            if len(self._views) >= self.max_cached_documents:
                # dicts keep insertion order and every use re-inserts: the first is the LRU.
                del self._views[next(iter(self._views))]
        self._views[document_id] = view
        return view

    async def refresh(self, document_id: str) -> DocumentView:
        """Bring the view up to the head after another replica committed."""
        view = await self.view(document_id)
        for entry in await self.store.entries(document_id, view.version):
            view.advance(entry, ot.apply(view.text, entry.op), self.keep_recent)
        return view

    def clear(self) -> None:
        """Drop every cached view (after losing Redis, the cache may be stale)."""
        self._views.clear()

    def forget(self, document_id: str) -> None:
        """Drop one document's cached view (its processing failed half way)."""
        self._views.pop(document_id, None)

    async def committed_version(
        self, document_id: str, author: str, client: str, op_id: str
    ) -> int | None:
        """The version an op with this identity was committed at, if it was."""
        raw = await self.redis.hget(
            keys.op_ids(document_id), keys.op_id_field(author, client, op_id)
        )
        return None if raw is None else int(raw)

    async def committed_before(
        self, document_id: str, author: str, client: str, op_id: str, version: int
    ) -> LogEntry | None:
        """The entry committed with this identity below ``version``, if any.

        A resend normally reuses its ``v`` and is found among the ops since it; this
        index also catches an id reused with a later ``v`` (PROTOCOL.md: invalid_op).
        """
        raw = await self.redis.hget(
            keys.op_ids(document_id), keys.op_id_field(author, client, op_id)
        )
        if raw is None or int(raw) >= version:
            return None
        found = await self.store.entries(document_id, int(raw), int(raw) + 1)
        return found[0] if found else None

    async def since(self, document_id: str, view: DocumentView, version: int) -> list[LogEntry]:
        cached = view.since(version)
        if cached is not None:
            return cached
        return await self.store.entries(document_id, version, view.version)

    async def append(
        self, document_id: str, view: DocumentView, entry: LogEntry, text: str
    ) -> list[bytes] | None:
        """Commit ``entry`` at ``view.version``: the gateways hosting the document, to be
        notified (collab_core.fanout), or None if the head moved (refresh, retry)."""
        assert entry.v == view.version
        new_version = view.version + 1
        snapshot = text if new_version % self.snapshot_every == 0 else ""
        id_field = keys.op_id_field(entry.author, entry.client, entry.id)
        args: list[bytes | str | int | float] = [
            view.version,
            len(text),
            snapshot,
            id_field,
            time.time(),
            "0" if self.wait_replicas else "1",
        ]
        for name, value in entry.stream_fields().items():
            args.append(name)
            args.append(value)
        ok, _head, *rest = await self._script(
            keys=[
                keys.head(document_id),
                keys.log(document_id),
                keys.snapshot(document_id, new_version),
                keys.snapshots(document_id),
                keys.op_ids(document_id),
                keys.hosts(document_id),
            ],
            args=args,
        )
        if not ok:
            return None
        hosts = rest[0] if rest else []
        view.advance(entry, text, self.keep_recent)
        return list(hosts)

    async def publish(self, document_id: str, version: int) -> int:
        """Make the ops below ``version`` visible to readers once ``wait_replicas``
        replicas have them; return how many confirmed (0 without waiting: the commit script
        made the ops visible itself).

        WAIT counts the replicas that have every write made so far *on the connection it
        is sent on*, so it follows a write of ours on the same connection: one pipeline,
        sent to the node that owns the document (Redis Cluster routes the keyless WAIT by
        ``target_nodes``). That write comes after the commit in the node's replication
        stream, so confirming it confirms the commit. After the timeout the ops become
        visible anyway, unconfirmed (counted by the caller): the failover window narrows,
        it does not close (docs/reliability.md).
        """
        if not self.wait_replicas:
            return 0  # the commit script made it visible already
        head = keys.head(document_id)
        route: dict[str, Any] = {}
        if isinstance(self.redis, RedisCluster):
            route["target_nodes"] = self.redis.get_node_from_key(head)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(head, "waits", 1)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms, **route)
            _, confirmed = await pipe.execute()
        await self._raise_visible(keys=[head], args=[version])
        return int(confirmed)
