"""Rooms: the connections of one document on this gateway, and fan-out to them.

Fan-out is the gateway's hot path. Each committed op is encoded once per room (one
``op`` frame for everyone, one ``ack`` frame for its author) and the same ``str`` is put
on every connection's bounded send queue; a connection whose queue is full is cut off
(``slow_consumer``, 4009) so it never stalls the room (DESIGN.md invariant 6).

Ordering (PROTOCOL.md, "Editing"): a room delivers the document log in version order,
and a connection receives every version from the one its ``welcome`` ended at, with no
gap: entries that arrive while its welcome is being built are kept in a backlog and
released after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from collab_core import protocol
from collab_core.errors import CloseCode, ErrorCode, ProtocolError
from collab_core.store import LogEntry
from collab_gateway import metrics

log = logging.getLogger("collab.gateway")


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """A queued close: the writer sends nothing after it."""

    code: int
    reason: str = ""


_SLOW_CONSUMER = protocol.error_message(
    ProtocolError(ErrorCode.SLOW_CONSUMER, "send queue full; resume with since")
).decode()


class Outbox:
    """A bounded queue of frames for one connection, drained by its writer task."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[str | CloseFrame] = asyncio.Queue(capacity)
        self.cut_off = False
        self.closing = False
        self._cut_off_unsent = False

    def put(self, frame: str) -> bool:
        """Queue ``frame``; False if the connection is gone or was just cut off."""
        if self.closing:
            return False
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.cut_off = self._cut_off_unsent = True
            self.closing = True
            metrics.SLOW_CONSUMERS.inc()
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        if self.closing:
            return
        self.closing = True
        try:
            self.queue.put_nowait(CloseFrame(code, reason))
        except asyncio.QueueFull:
            self.cut_off = self._cut_off_unsent = True

    async def next(self) -> str | CloseFrame:
        """The next thing to write. After a cut-off: the error, then the 4009 close."""
        if self._cut_off_unsent:
            # ``cut_off`` stays set: the connection's end is counted as a slow consumer.
            self._cut_off_unsent = False
            # Drop what is queued: the client resumes with ``since`` and gets it again.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(CloseFrame(CloseCode.SLOW_CONSUMER, "slow consumer"))
            metrics.error_sent(ErrorCode.SLOW_CONSUMER)
            return _SLOW_CONSUMER
        return await self.queue.get()


@dataclass(eq=False, slots=True)
class Member:
    """A connection as a room sees it."""

    session: str
    user: str
    client: str
    outbox: Outbox
    #: The first version this connection has not received yet.
    next_version: int = -1
    ready: bool = False
    backlog: list[LogEntry] = field(default_factory=list)
    #: Duplicate acks waiting until the connection has received their version.
    held_acks: list[tuple[int, str]] = field(default_factory=list)

    def is_author(self, entry: LogEntry) -> bool:
        # The same editor instance, also after a reconnect (a new session): its resent
        # op's commit is its ack (PROTOCOL.md, "Connecting").
        return entry.client == self.client and entry.author == self.user


class Room:
    """The members on this gateway of one document, and where its streams were read to."""

    def __init__(self, doc: str) -> None:
        self.doc = doc
        #: This gateway is listed among the document's hosts (collab_core.fanout).
        self.hosted = False
        self.members: dict[str, Member] = {}
        #: Next log version to read; None until the first welcome set it.
        self.version: int | None = None
        #: Ops below this version may be read (made visible by edit-transform).
        self.readable = 0
        #: Last presence stream id read.
        self.presence_cursor: bytes | str = "0-0"
        #: Highest version delivered here; a store that answers lower has lost data.
        self.seen_version = 0

    def deliver(self, entries: Iterable[LogEntry]) -> int:
        """Fan committed ops out to the members. Returns the number of frames queued."""
        sent = acks = 0
        for entry in entries:
            if self.version is not None and entry.v < self.version:
                continue
            op_frame: str | None = None
            ack_frame: str | None = None
            # Nothing below changes the members, so iterate them directly.
            for member in self.members.values():
                if not member.ready:
                    member.backlog.append(entry)
                    continue
                if entry.v < member.next_version:
                    continue
                if member.is_author(entry):
                    if ack_frame is None:
                        ack_frame = protocol.encode(protocol.Ack(id=entry.id, v=entry.v)).decode()
                    member.outbox.put(ack_frame)
                    acks += 1
                else:
                    if op_frame is None:
                        op_frame = op_message(entry).decode()
                    member.outbox.put(op_frame)
                sent += 1
                member.next_version = entry.v + 1
                if member.held_acks:
                    self._release_acks(member)
            self.version = entry.v + 1
            self.seen_version = max(self.seen_version, entry.v + 1)
        metrics.OPS_OUT.inc(sent - acks)
        metrics.ACKS_OUT.inc(acks)
        return sent

    def welcome_sent(self, member: Member, version: int) -> None:
        """``welcome`` at ``version`` was queued: release what arrived meanwhile."""
        member.next_version = version
        member.ready = True
        self.seen_version = max(self.seen_version, version)
        backlog, member.backlog = member.backlog, []
        backlog.sort(key=lambda entry: entry.v)
        for entry in backlog:
            if entry.v < member.next_version:
                continue
            if member.is_author(entry):
                frame = protocol.encode(protocol.Ack(id=entry.id, v=entry.v))
                metrics.ACKS_OUT.inc()
            else:
                frame = op_message(entry)
                metrics.OPS_OUT.inc()
            member.outbox.put(frame.decode())
            member.next_version = entry.v + 1
        if member.held_acks:
            self._release_acks(member)

    def backlog_missing(self, member: Member, entries: list[LogEntry]) -> None:
        """Add entries the room read before this member's welcome was built."""
        if entries:
            member.backlog[:0] = entries

    def duplicate_ack(self, member: Member, op_id: str, v: int) -> None:
        """Acknowledge a resent op again, once the member has received version ``v``."""
        if v < member.next_version and member.ready:
            member.outbox.put(protocol.encode(protocol.Ack(id=op_id, v=v)).decode())
            metrics.ACKS_OUT.inc()
        else:
            member.held_acks.append((v, op_id))

    def _release_acks(self, member: Member) -> None:
        keep = []
        for v, op_id in member.held_acks:
            if v < member.next_version:
                member.outbox.put(protocol.encode(protocol.Ack(id=op_id, v=v)).decode())
                metrics.ACKS_OUT.inc()
            else:
                keep.append((v, op_id))
        member.held_acks = keep

    def broadcast_presence(self, session: str, frame: str) -> None:
        sent = 0
        for member in self.members.values():
            if member.ready and member.session != session:
                member.outbox.put(frame)
                sent += 1
        metrics.PRESENCE_OUT.inc(sent)


def op_broadcast(entry: LogEntry) -> protocol.OpBroadcast:
    """The ``op`` message of a committed op; the stored op JSON is copied, not re-encoded."""
    return protocol.OpBroadcast(
        v=entry.v,
        # The op is already JSON in the log entry; Raw splices it in unchanged.
        op=msgspec.Raw(entry.op_json),  # type: ignore[arg-type]
        id=entry.id,
        client=entry.client,
        author=entry.author,
        session=entry.session,
    )


def op_message(entry: LogEntry) -> bytes:
    return protocol.encode(op_broadcast(entry))


class Registry:
    """Every room and connection of this gateway."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, tuple[Room, Member]] = {}

    def join(self, doc: str, member: Member) -> Room:
        room = self.rooms.get(doc)
        if room is None:
            room = self.rooms[doc] = Room(doc)
            metrics.ROOMS.set(len(self.rooms))
        room.members[member.session] = member
        self.sessions[member.session] = (room, member)
        metrics.CONNECTIONS.set(len(self.sessions))
        return room

    def leave(self, member: Member) -> None:
        found = self.sessions.pop(member.session, None)
        if found is None:
            return
        room = found[0]
        room.members.pop(member.session, None)
        if not room.members:
            del self.rooms[room.doc]
        metrics.ROOMS.set(len(self.rooms))
        metrics.CONNECTIONS.set(len(self.sessions))

    def connection_count(self) -> int:
        return len(self.sessions)
