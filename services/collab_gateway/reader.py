"""The gateway's reads: its inbox, blocking, and the streams of the rooms it was told about.

A gateway blocks on one stream only, its inbox. Edit-transform and presence write a
``doc`` notification there after appending to a document that this gateway hosts
(collab_core.fanout); the reader then reads those rooms' log and presence streams, one
single-slot XREAD per room, all in one pipeline (with a Redis Cluster, one round trip per
node that owns some of them). Replies to this gateway's sessions (duplicate acks,
errors) arrive in the inbox too. Every few seconds all rooms are read whatever the
notifications said, which bounds the delay of a lost one.

A room that opens marks itself to be read and writes a ``wake`` entry, so a blocked read
returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis

from collab_core import fanout, keys, protocol, tracing
from collab_core.errors import ErrorCode, ProtocolError
from collab_core.ingress import Reply
from collab_core.store import LogEntry
from collab_gateway import metrics
from collab_gateway.rooms import Registry, Room

log = logging.getLogger("collab.gateway")

INBOX_MAXLEN = fanout.INBOX_MAXLEN
#: Entries read per stream and call; a room further behind catches up over several calls.
READ_COUNT = 500
#: Span names hold no document id.
_LOG_TEMPLATE = keys.log("*")


class Reader:
    def __init__(
        self,
        redis: Redis,
        registry: Registry,
        gateway_id: str,
        block_ms: int = 5000,
        sweep_seconds: float = 5.0,
    ):
        self.redis = redis
        self.registry = registry
        self.inbox = keys.inbox(gateway_id)
        self.inbox_cursor: bytes | str = "0-0"
        self.block_ms = block_ms
        self.sweep_seconds = sweep_seconds
        self._waiters: dict[str, asyncio.Future[Reply]] = {}
        #: Rooms to read on the next round.
        self._due: set[str] = set()
        self._next_sweep = 0.0

    def expect(self, session: str) -> asyncio.Future[Reply]:
        """A future for the next reply to ``session`` (an HTTP request waiting on a commit)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[session] = future
        return future

    def forget(self, session: str) -> None:
        self._waiters.pop(session, None)

    async def wake(self, doc: str | None = None) -> None:
        """Read ``doc``'s room on the next round, and end a blocked read now."""
        if doc is not None:
            self._due.add(doc)
        await self.redis.xadd(self.inbox, {"kind": "wake"}, maxlen=INBOX_MAXLEN, approximate=True)

    async def run(self) -> None:
        while True:
            await self.read_once()

    async def read_once(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_seconds
            await self._sweep()
        # Block only when no room waits to be read.
        block = None if self._due else self.block_ms
        response: Any = await self.redis.xread(
            {self.inbox: self.inbox_cursor}, count=READ_COUNT, block=block
        )
        replies: list[Reply] = []
        for _, entries in response or []:
            self.inbox_cursor = entries[-1][0]
            for _, fields in entries:
                kind = fields.get(b"kind")
                if kind == fanout.DOC:
                    doc = fields[b"doc"].decode()
                    self._due.add(doc)
                    visible = fields.get(b"v")
                    room = self.registry.rooms.get(doc)
                    if visible is not None and room is not None:
                        room.readable = max(room.readable, int(visible))
                elif kind != b"wake":
                    reply = Reply.from_stream(fields)
                    replies.append(reply)
                    found = self.registry.sessions.get(reply.session)
                    if found is not None:
                        self._due.add(found[0].doc)
        if self._due:
            await self._read_rooms()
        # Log entries first: a duplicate ack must not overtake the op it acknowledges.
        for reply in replies:
            self._reply(reply)

    async def _sweep(self) -> None:
        """Learn every room's visible version from Redis, in case a notification was lost."""
        rooms = [room for room in self.registry.rooms.values() if room.version is not None]
        if not rooms:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hmget(keys.head(room.doc), "visible", "version")
            heads = await pipe.execute()
        for room, (visible, version) in zip(rooms, heads, strict=True):
            found = visible if visible is not None else version
            room.readable = max(room.readable, int(found or 0))
            self._due.add(room.doc)

    async def _read_rooms(self) -> None:
        rooms: list[Room] = []
        for doc in self._due:
            room = self.registry.rooms.get(doc)
            # A room still loading its welcome wakes the reader once it has a version.
            if room is not None and room.version is not None:
                rooms.append(room)
        self._due.clear()
        if not rooms:
            return
        reads_log: list[bool] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                assert room.version is not None
                if room.readable > room.version:
                    # Entry ids are <v+1>-0: versions version .. readable - 1.
                    pipe.xrange(
                        keys.log(room.doc),
                        keys.log_entry_id(room.version),
                        keys.log_entry_id(room.readable - 1),
                        count=READ_COUNT,
                    )
                reads_log.append(room.readable > room.version)
                pipe.xread({keys.presence(room.doc): room.presence_cursor}, count=READ_COUNT)
            responses = iter(await pipe.execute())
        received = time.time()
        for room, has_log in zip(rooms, reads_log, strict=True):
            entries = next(responses) if has_log else []
            presence = next(responses)
            if self.registry.rooms.get(room.doc) is not room:
                continue  # closed while the read was in flight
            if entries:
                log_entries = [
                    LogEntry.from_stream(entry_id, fields) for entry_id, fields in entries
                ]
                if tracing.enabled:
                    _deliver_traced(room, keys.log(room.doc), log_entries)
                else:
                    room.deliver(log_entries)
                for entry in log_entries:
                    metrics.COMMIT_TO_SEND_SECONDS.observe(max(0.0, received - entry.ts))
                if len(entries) >= READ_COUNT:
                    self._due.add(room.doc)  # more to read next round
            for _, presence_entries in presence or []:
                room.presence_cursor = presence_entries[-1][0]
                for _, fields in presence_entries:
                    session = fields[b"session"].decode()
                    room.broadcast_presence(session, fields[b"msg"].decode())
                if len(presence_entries) >= READ_COUNT:
                    self._due.add(room.doc)

    def _reply(self, reply: Reply) -> None:
        waiter = self._waiters.pop(reply.session, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(reply)
            return
        found = self.registry.sessions.get(reply.session)
        if found is None:
            return
        room, member = found
        if reply.kind == "ack":
            room.duplicate_ack(member, reply.id, reply.v)
        elif reply.kind == "error":
            error = ProtocolError(ErrorCode(reply.code), reply.message, id=reply.id or None)
            metrics.error_sent(error.code)
            member.outbox.put(protocol.error_message(error).decode())


def _deliver_traced(room: Room, stream: str, entries: list[LogEntry]) -> None:
    """Deliver entry by entry, each in a span of the trace its commit belongs to."""
    for entry in entries:
        with tracing.process(
            stream,
            entry.traceparent,
            message_id=keys.log_entry_id(entry.v),
            template=_LOG_TEMPLATE,
        ):
            room.deliver((entry,))
