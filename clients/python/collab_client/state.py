"""The client side of the collaboration protocol as a state machine (PROTOCOL.md, "Editing").

It owns one client's view of one document: the local text, the classic OT client's one op
in flight and the buffer composed behind it, resume with ``since``, and the other
participants' cursors in local coordinates. Sans-I/O: no awaits, no clock, no network.
Feed it decoded server messages with :meth:`ClientState.receive` and the user's edits with
:meth:`ClientState.local_edit`; after every call, send :meth:`ClientState.messages_to_send`
in order and handle :meth:`ClientState.events_received`.

Choices where PROTOCOL.md is silent:

- A ``welcome`` with ``text`` while ops are pending (the server lacks the ops after
  ``since``): the ops in between are unknown, and so is whether the op in flight was
  committed. The welcome text is taken as the truth about everything sent. The buffer,
  which was never sent, is rebased onto it through a diff (``ot.replace``: intent is kept
  at the granularity of one changed span) and becomes the next op. The op in flight leaves
  the local text but is resent with its original id and ``v`` as a *ghost*, so the server
  commits it if it still can and never twice: an ``ack`` below the welcome version means
  it is in the text already; at or above it, the client resyncs to receive it as an op;
  an error drops it with :class:`OpRejected`. An unacknowledged op may so be lost, never
  applied twice (DESIGN.md, invariants 2 and 3).
- Presence while ops are pending is sent at the server version, the cursor mapped back
  through the pending ops (a caret in pending text sits at its insertion point), and sent
  again after an ack when the committed op moved it.
- A gap (an op or ack above the client's version) or ``invalid_version`` for the op in
  flight makes the client stale: it ignores the rest of the connection and emits
  :class:`ResyncNeeded`; the caller reconnects and ``since`` repairs the state. After
  ``invalid_version`` the op, known uncommitted, is reissued with a new id.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from collab_core import ot
from collab_core.errors import ErrorCode
from collab_core.ot import Component, Op

Message: TypeAlias = dict[str, Any]

# Nothing was committed and the same op may be sent again (PROTOCOL.md, errors table).
_RETRYABLE = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL})


@dataclass(frozen=True, slots=True)
class Cursor:
    anchor: int
    head: int


@dataclass(frozen=True, slots=True)
class Participant:
    """Another session in the document; ``cursor`` is in local coordinates."""

    session: str
    user: dict[str, Any]
    role: str | None
    cursor: Cursor | None
    meta: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Welcomed:
    session: str
    role: str
    user: dict[str, Any]
    version: int


@dataclass(frozen=True, slots=True)
class TextChanged:
    """``op`` was applied to the local text; ``author`` is None for a resync or rollback."""

    op: Op
    author: str | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Acknowledged:
    id: str
    v: int


@dataclass(frozen=True, slots=True)
class Synced:
    version: int


@dataclass(frozen=True, slots=True)
class OpRejected:
    """The server refused op ``id``. With ``retry``, call :meth:`ClientState.resend` later;
    otherwise the op is gone (rolled back with a :class:`TextChanged`)."""

    id: str
    code: str
    message: str
    retry: bool


@dataclass(frozen=True, slots=True)
class ResyncNeeded:
    """Close the connection, call :meth:`ClientState.connection_lost`, then reconnect."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str
    message: str
    id: str | None


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: Participant


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    session: str
    reason: str


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    participant: Participant


Event: TypeAlias = (
    Welcomed
    | TextChanged
    | Acknowledged
    | Synced
    | OpRejected
    | ResyncNeeded
    | ReconnectRequested
    | ServerError
    | ParticipantJoined
    | ParticipantLeft
    | PresenceChanged
)


@dataclass(slots=True)
class _InFlight:
    id: str
    v: int  # as first sent: a resend must repeat ``id``, ``v`` and ``op`` (PROTOCOL.md)
    sent: Op
    op: Op  # transformed to the current version; meaningful only when in_text
    in_text: bool = True  # False for a ghost (see module docstring)
    status: Literal["sent", "committed", "refused"] = "sent"


@dataclass(slots=True)
class _Peer:
    session: str
    user: dict[str, Any]
    role: str | None
    v: int = 0  # the server version ``cursor`` refers to
    cursor: tuple[int, int] | None = None
    meta: dict[str, Any] | None = None


def _delete_length(c: dict[str, int | str]) -> int:
    d = c["d"]
    return d if isinstance(d, int) else len(d)


def _unmap(position: int, op: Sequence[Component]) -> int:
    """Map a position in the text after ``op`` back to the text before it.

    A position inside or at the end of inserted text goes to the insertion point.
    """
    src = dst = 0
    for c in op:
        if isinstance(c, int):
            if position <= dst + c:
                return src + position - dst
            src += c
            dst += c
        elif isinstance(c, str):
            if position <= dst + len(c):
                return src
            dst += len(c)
        else:
            src += _delete_length(c)
    return src + position - dst


def _invert(op: Sequence[Component], text: str) -> Op:
    """The op that undoes ``op``, which applies to ``text``."""
    out: Op = []
    pos = 0
    for c in op:
        if isinstance(c, int):
            out.append(c)
            pos += c
        elif isinstance(c, str):
            out.append({"d": len(c)})
        else:
            n = _delete_length(c)
            out.append(text[pos : pos + n])
            pos += n
    return ot.normalize(out)


class ClientState:
    """One client of one document. ``client_id`` is kept across reconnects (PROTOCOL.md)."""

    def __init__(self, client_id: str, *, history_limit: int = 256) -> None:
        self.client_id = client_id
        # "stale": connected but out of step; the caller must reconnect (ResyncNeeded).
        self.phase: Literal["closed", "connecting", "open", "stale"] = "closed"
        self._text = ""
        self._server_text = ""
        self._version: int | None = None
        self._inflight: _InFlight | None = None
        self._buffer: Op = []
        self._op_counter = 0
        self._full_resync = False
        # Recent server ops, contiguous by version, to map presence sent at older versions.
        self._history: deque[tuple[int, Op]] = deque(maxlen=history_limit)
        self._peers: dict[str, _Peer] = {}
        self._cursor: tuple[int, int] | None = None
        self._meta: dict[str, Any] | None = None
        self._presence_set = False
        # (v, cursor, meta) as last sent on this connection.
        self._presence_sent: tuple[int, tuple[int, int] | None, dict[str, Any] | None] | None
        self._presence_sent = None
        self._outgoing: list[Message] = []
        self._events: list[Event] = []

    # Accessors.

    @property
    def text(self) -> str:
        return self._text

    @property
    def version(self) -> int | None:
        """The server version: ops applied, own acknowledged ones included."""
        return self._version

    @property
    def pending(self) -> Op:
        """Local changes not yet acknowledged, as one op on the server's text."""
        f = self._inflight
        return ot.compose(f.op, self._buffer) if f and f.in_text else list(self._buffer)

    @property
    def synced(self) -> bool:
        return self._inflight is None and not self._buffer

    @property
    def cursor(self) -> Cursor | None:
        return None if self._cursor is None else Cursor(*self._cursor)

    @property
    def participants(self) -> dict[str, Participant]:
        return {s: self._participant(p) for s, p in self._peers.items()}

    # Outputs.

    def messages_to_send(self) -> list[Message]:
        """Drain the client messages to send, in order, as JSON-ready dicts."""
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[Event]:
        """Drain the events for the application, in the order they happened."""
        out, self._events = self._events, []
        return out

    # Inputs.

    def connect(self, token: str) -> None:
        """Start a connection. After calling this method, send :meth:`messages_to_send`."""
        if self.phase != "closed":
            raise RuntimeError(f"connect() while {self.phase}")
        hello: Message = {"type": "hello", "token": token, "client": self.client_id}
        if self._version is not None and not self._full_resync:
            hello["since"] = self._version
        self.phase = "connecting"
        self._presence_sent = None
        self._outgoing = [hello]

    def connection_lost(self) -> None:
        """The WebSocket closed. Unsent messages are dropped; pending ops are kept."""
        self.phase = "closed"
        self._outgoing = []
        self._peers.clear()

    def local_edit(self, op: Sequence[Component]) -> None:
        """Apply the user's ``op`` to the local text. Raises ``ot.OpError`` if it does not fit.

        After calling this method, send :meth:`messages_to_send`.
        """
        if self._version is None:
            raise RuntimeError("no document yet: wait for welcome")
        text = ot.apply(self._text, op)
        op = ot.normalize(op)
        if not op:
            return
        self._text = text
        self._buffer = ot.compose(self._buffer, op)
        self._map_own_cursor(op)
        self._flush()

    def set_cursor(
        self, anchor: int, head: int | None = None, *, meta: dict[str, Any] | None = None
    ) -> None:
        """Set the local selection (local coordinates); ``meta`` replaces the last one given.

        After calling this method, send :meth:`messages_to_send`.
        """
        head = anchor if head is None else head
        if not (0 <= anchor <= len(self._text) and 0 <= head <= len(self._text)):
            raise ValueError("cursor outside the document")
        self._cursor = (anchor, head)
        self._set_presence(meta)

    def clear_cursor(self, *, meta: dict[str, Any] | None = None) -> None:
        self._cursor = None
        self._set_presence(meta)

    def resend(self) -> None:
        """Send the op in flight again, unchanged; the server never applies it twice.

        Call it after an :class:`OpRejected` with ``retry``, after a delay of your choice.
        """
        if self.phase == "open" and self._inflight is not None:
            self._send_inflight()

    def receive(self, message: Message) -> None:
        """Handle one decoded server message.

        After calling this method, send :meth:`messages_to_send` and handle
        :meth:`events_received`. Unknown message types are ignored (forward compatibility).
        """
        if self.phase == "closed":
            raise RuntimeError("receive() without a connection")
        kind = message.get("type")
        if kind == "welcome" and self.phase == "connecting":
            self._on_welcome(message)
        elif kind == "error":
            self._on_error(message)
        elif kind == "reconnect":
            self._events.append(ReconnectRequested(int(message.get("retry_after_ms", 0))))
        elif self.phase != "open":
            return
        elif kind == "op":
            self._on_op(message)
        elif kind == "ack":
            self._on_ack(message)
        elif kind == "presence":
            self._on_presence(message)
        elif kind == "join":
            p = message["participant"]
            peer = _Peer(str(p["session"]), dict(p.get("user") or {}), p.get("role"))
            self._peers[peer.session] = peer
            self._events.append(ParticipantJoined(self._participant(peer)))
        elif kind == "leave":
            session = str(message["session"])
            if self._peers.pop(session, None) is not None:
                self._events.append(ParticipantLeft(session, str(message.get("reason", ""))))
        self._flush()
        self._send_presence()

    # Server messages.

    def _on_welcome(self, m: Message) -> None:
        self.phase = "open"
        version = int(m["version"])
        self._events.append(Welcomed(m["session"], m["role"], dict(m["user"]), version))
        self._peers = {}
        if "ops" in m and self._version is not None:
            self._set_peers(m.get("participants") or [])
            for op_message in m["ops"]:
                self._on_op(op_message)
            if self.phase == "open" and self._version != version:
                self._resync(f"welcome at {version} but caught up to {self._version}")
            f = self._inflight
            if self.phase == "open" and f is not None:
                if f.status == "refused":
                    # The server said it is not committed; its v is unusable (PROTOCOL.md).
                    f.id, f.v, f.sent, f.status = self._new_id(), version, f.op, "sent"
                self._send_inflight()
            return
        self._full_resync = False
        self._reset(version, str(m["text"]))
        self._set_peers(m.get("participants") or [])
        if self._inflight is not None:
            self._send_inflight()

    def _reset(self, version: int, text: str) -> None:
        """Take ``text`` at ``version`` as the server state, rebasing what is pending."""
        f = self._inflight
        base, intent = self._server_text, self._buffer
        if f is not None and f.in_text:
            if f.status == "refused":
                intent = ot.compose(f.op, intent)  # known uncommitted: it joins the buffer
            else:
                base = ot.apply(base, f.op)  # committed or not, the text says
            if f.status == "sent":
                f.in_text = False
            else:
                f = None
        rebased = ot.transform(intent, ot.replace(base, text), "right")
        old = self._text
        self._inflight, self._buffer = f, rebased
        self._server_text, self._version = text, version
        self._text = ot.apply(text, rebased)
        self._history.clear()
        if old != self._text:
            change = ot.replace(old, self._text)
            self._events.append(TextChanged(change))
            self._map_own_cursor(change)

    def _on_op(self, m: Message) -> None:
        if self.phase != "open":
            return
        v = int(m["v"])
        assert self._version is not None
        if v < self._version:
            return  # delivered already (PROTOCOL.md, ordering guarantee)
        if v > self._version:
            self._resync(f"missing ops {self._version} to {v - 1}")
            return
        f = self._inflight
        if f is not None and m.get("client") == self.client_id and m.get("id") == f.id:
            if f.in_text:
                self._commit_inflight()
                return
            # A ghost is not in the local text: it applies like a remote op.
            self._inflight = None
            self._events.append(Acknowledged(f.id, v))
        text = ot.apply(self._server_text, m["op"])
        op = ot.normalize(m["op"])
        self._advance(v, op, text)
        # The op committed first stays left (PROTOCOL.md): ``op`` is, pending ops are not.
        if f is not None and f.in_text:
            f.op, op = ot.transform(f.op, op, "right"), ot.transform(op, f.op, "left")
        if self._buffer:
            self._buffer, op = (
                ot.transform(self._buffer, op, "right"),
                ot.transform(op, self._buffer, "left"),
            )
        self._text = ot.apply(self._text, op)
        self._map_own_cursor(op)
        self._events.append(TextChanged(op, m.get("author"), m.get("session")))

    def _on_ack(self, m: Message) -> None:
        f = self._inflight
        if f is None or m.get("id") != f.id:
            return  # the answer to a resend of an op acknowledged already
        v = int(m["v"])
        assert self._version is not None
        if not f.in_text:
            self._inflight = None
            self._events.append(Acknowledged(f.id, v))
            if v >= self._version:
                self._resync(f"own op committed at {v} after the welcome")
            elif not self._buffer:
                self._events.append(Synced(self._version))
        elif v == self._version:
            self._commit_inflight()
        elif v > self._version:
            self._resync(f"ack at {v} before ops from {self._version}")
        else:
            # Committed before ops we took as concurrent with it: only a text repairs that.
            f.status = "committed"
            self._full_resync = True
            self._resync(f"ack at {v} below version {self._version}")

    def _on_error(self, m: Message) -> None:
        code, message, op_id = str(m["code"]), str(m.get("message", "")), m.get("id")
        f = self._inflight
        if f is None or op_id != f.id or self.phase != "open":
            self._events.append(ServerError(code, message, op_id))
            return
        if code in _RETRYABLE:
            self._events.append(OpRejected(f.id, code, message, retry=True))
            return
        if code == ErrorCode.INVALID_VERSION and f.in_text:
            f.status = "refused"
            self._resync(f"op {f.id} refused: {message}")
            return
        self._inflight = None
        self._events.append(OpRejected(f.id, code, message, retry=False))
        if f.in_text:
            # Errors leave the document unchanged (PROTOCOL.md): undo the op locally.
            undo = _invert(f.op, self._server_text)
            change = ot.transform(undo, self._buffer, "left")
            self._buffer = ot.transform(self._buffer, undo, "right")
            self._text = ot.apply(self._text, change)
            self._map_own_cursor(change)
            self._events.append(TextChanged(change))

    def _on_presence(self, m: Message) -> None:
        session = str(m["session"])
        peer = self._peers.get(session)
        if peer is None:
            peer = self._peers[session] = _Peer(session, {}, None)
        if "user" in m:
            peer.user = dict(m["user"])
        peer.meta = m.get("meta")
        self._set_peer_cursor(peer, int(m["v"]), m.get("cursor"))
        self._events.append(PresenceChanged(self._participant(peer)))

    # Ops.

    def _new_id(self) -> str:
        self._op_counter += 1
        return str(self._op_counter)

    def _send_inflight(self) -> None:
        f = self._inflight
        assert f is not None
        self._outgoing.append({"type": "op", "id": f.id, "v": f.v, "op": f.sent})

    def _flush(self) -> None:
        if self.phase != "open" or self._inflight is not None or not self._buffer:
            return
        assert self._version is not None
        op, self._buffer = self._buffer, []
        self._inflight = _InFlight(self._new_id(), self._version, op, op)
        self._send_inflight()

    def _commit_inflight(self) -> None:
        f = self._inflight
        assert f is not None
        assert self._version is not None
        self._inflight = None
        v = self._version
        self._advance(v, f.op, ot.apply(self._server_text, f.op))
        self._events.append(Acknowledged(f.id, v))
        if not self._buffer:
            self._events.append(Synced(v + 1))

    def _advance(self, v: int, op: Op, text: str) -> None:
        """Record ``op`` as the server op at version ``v``, which turned the text into ``text``."""
        self._server_text = text
        self._version = v + 1
        self._history.append((v, op))
        for peer in self._peers.values():
            if peer.cursor is not None and peer.v == v:
                a, h = peer.cursor
                peer.cursor = (ot.transform_position(a, op), ot.transform_position(h, op))
                peer.v = v + 1

    def _resync(self, reason: str) -> None:
        self.phase = "stale"
        self._events.append(ResyncNeeded(reason))

    # Presence.

    def _map_since(self, v: int, positions: tuple[int, int]) -> tuple[int, int] | None:
        """Map server positions at ``v`` to the current version; None if history lacks it."""
        version = self._version
        assert version is not None
        if v == version:
            return positions
        if not self._history or not self._history[0][0] <= v < version:
            return None
        a, h = positions
        for _, op in itertools.islice(self._history, v - self._history[0][0], None):
            a, h = ot.transform_position(a, op), ot.transform_position(h, op)
        return a, h

    def _set_peers(self, participants: list[Message]) -> None:
        for p in participants:
            peer = _Peer(str(p["session"]), dict(p.get("user") or {}), p.get("role"))
            peer.meta = p.get("meta")
            self._peers[peer.session] = peer
            self._set_peer_cursor(peer, int(p.get("v") or 0), p.get("cursor"))

    def _set_peer_cursor(self, peer: _Peer, v: int, cursor: Message | None) -> None:
        assert self._version is not None
        if cursor is None:
            peer.cursor = None
            return
        positions = (int(cursor["anchor"]), int(cursor["head"]))
        if v > self._version:
            peer.v, peer.cursor = v, positions  # ahead of us: mapped as ops arrive
            return
        mapped = self._map_since(v, positions)
        if mapped is None:
            n = len(self._server_text)  # older than the history kept: best effort
            mapped = (min(positions[0], n), min(positions[1], n))
        peer.v, peer.cursor = self._version, mapped

    def _to_local(self, position: int) -> int:
        f = self._inflight
        if f is not None and f.in_text:
            position = ot.transform_position(position, f.op)
        return ot.transform_position(position, self._buffer)

    def _to_server(self, position: int) -> int:
        position = _unmap(position, self._buffer)
        f = self._inflight
        return _unmap(position, f.op) if f is not None and f.in_text else position

    def _participant(self, peer: _Peer) -> Participant:
        cursor = None
        if peer.cursor is not None:
            a, h = peer.cursor
            if peer.v == self._version:
                a, h = self._to_local(a), self._to_local(h)
            # Ahead of us (mapped once the ops arrive) or out of range: shown in range.
            n = len(self._text)
            cursor = Cursor(min(max(a, 0), n), min(max(h, 0), n))
        return Participant(peer.session, peer.user, peer.role, cursor, peer.meta)

    def _map_own_cursor(self, op: Op) -> None:
        if self._cursor is not None:
            a, h = self._cursor
            self._cursor = (ot.transform_position(a, op), ot.transform_position(h, op))

    def _set_presence(self, meta: dict[str, Any] | None) -> None:
        if meta is not None:
            self._meta = meta
        self._presence_set = True
        self._send_presence()

    def _send_presence(self) -> None:
        """Queue presence unless what others derive from the last one sent is the same."""
        if not self._presence_set or self.phase != "open":
            return
        assert self._version is not None
        v = self._version
        cursor = None
        if self._cursor is not None:
            cursor = (self._to_server(self._cursor[0]), self._to_server(self._cursor[1]))
        last = self._presence_sent
        if last is not None and last[2] == self._meta:
            derived = last[1] if last[1] is None else self._map_since(last[0], last[1])
            if derived == cursor:
                self._presence_sent = (v, cursor, self._meta)
                return
        self._presence_sent = (v, cursor, self._meta)
        message: Message = {"type": "presence", "v": v, "cursor": None}
        if cursor is not None:
            message["cursor"] = {"anchor": cursor[0], "head": cursor[1]}
        if self._meta is not None:
            message["meta"] = self._meta
        self._outgoing.append(message)
