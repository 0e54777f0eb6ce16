"""The gateway's one blocking read: every hosted room's log and presence streams, plus
this gateway's inbox, in a single XREAD.

One read serves all rooms, so the cost per wake-up does not grow with connections. A
room that joins while the read is blocked would wait for the next wake-up; the gateway
writes a ``wake`` entry to its own inbox so the read returns at once and the next one
includes the new room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis

from collab_core import keys, protocol, tracing
from collab_core.errors import ErrorCode, ProtocolError
from collab_core.ingress import Reply
from collab_core.store import LogEntry
from collab_gateway import metrics
from collab_gateway.rooms import Registry, Room

log = logging.getLogger("collab.gateway")

INBOX_MAXLEN = 10_000
#: Entries read per stream and call; a room further behind catches up over several calls.
READ_COUNT = 500
#: Span names hold no document id.
_LOG_TEMPLATE = keys.log("*")


class Reader:
    def __init__(self, redis: Redis, registry: Registry, gateway_id: str, block_ms: int = 5000):
        self.redis = redis
        self.registry = registry
        self.inbox = keys.inbox(gateway_id)
        self.inbox_cursor: bytes | str = "0-0"
        self.block_ms = block_ms
        self._waiters: dict[str, asyncio.Future[Reply]] = {}

    def expect(self, session: str) -> asyncio.Future[Reply]:
        """A future for the next reply to ``session`` (an HTTP request waiting on a commit)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[session] = future
        return future

    def forget(self, session: str) -> None:
        self._waiters.pop(session, None)

    async def wake(self) -> None:
        await self.redis.xadd(self.inbox, {"kind": "wake"}, maxlen=INBOX_MAXLEN, approximate=True)

    async def run(self) -> None:
        while True:
            await self.read_once()

    async def read_once(self) -> None:
        streams: dict[Any, Any] = {self.inbox: self.inbox_cursor}
        for doc, room in self.registry.rooms.items():
            if room.version is None:
                continue
            # Entry ids are <v+1>-0: reading after <version>-0 starts at ``version``.
            streams[keys.log(doc)] = f"{room.version}-0"
            streams[keys.presence(doc)] = room.presence_cursor
        response: Any = await self.redis.xread(streams, count=READ_COUNT, block=self.block_ms)
        if not response:
            return
        received = time.time()
        replies: list[Reply] = []
        for raw_stream, entries in response:
            stream = raw_stream.decode()
            if stream == self.inbox:
                self.inbox_cursor = entries[-1][0]
                replies.extend(
                    Reply.from_stream(fields)
                    for _, fields in entries
                    if fields.get(b"kind") != b"wake"
                )
                continue
            doc, kind = _parse(stream)
            found_room = self.registry.rooms.get(doc)
            if found_room is None:
                continue
            room = found_room
            if kind == "log":
                log_entries = [
                    LogEntry.from_stream(entry_id, fields) for entry_id, fields in entries
                ]
                if tracing.enabled:
                    _deliver_traced(room, stream, log_entries)
                else:
                    room.deliver(log_entries)
                for entry in log_entries:
                    metrics.COMMIT_TO_SEND_SECONDS.observe(max(0.0, received - entry.ts))
            else:
                room.presence_cursor = entries[-1][0]
                for _, fields in entries:
                    session = fields[b"session"].decode()
                    room.broadcast_presence(session, fields[b"msg"].decode())
        # Log entries first: a duplicate ack must not overtake the op it acknowledges.
        for reply in replies:
            self._reply(reply)

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


def _parse(stream: str) -> tuple[str, str]:
    """``collab:{d:<id>}:log`` -> (``<id>``, ``log``)."""
    tag_end = stream.index("}")
    return stream[stream.index("{d:") + 3 : tag_end], stream[tag_end + 2 :]
