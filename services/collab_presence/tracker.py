"""The roster of every document: who is connected, where their cursor is. Pure.

Input is :class:`~collab_core.ingress.PresenceUpdate` values from the gateways plus
``now``; output is a list of :class:`Publish` (a frame for the document's presence
stream) and roster changes to persist. Cursor updates are coalesced: the latest state
of a session wins and is published on the next :meth:`Tracker.flush`, so a client that
sends 100 updates a second costs the room at most one event per flush interval.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgspec

from collab_core.ingress import PresenceUpdate

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class Publish:
    """Send ``frame`` to the document's connections (except ``session`` itself)."""

    doc: str
    session: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class SaveParticipant:
    doc: str
    session: str
    participant: bytes


@dataclass(frozen=True, slots=True)
class DropParticipant:
    doc: str
    session: str


Action = Publish | SaveParticipant | DropParticipant


@dataclass(slots=True)
class _Session:
    doc: str
    gateway: str
    participant: dict[str, object]
    #: Latest presence not yet published: (v, cursor, meta).
    pending: tuple[object, object, object] | None = None
    last_seen: float = 0.0


@dataclass(slots=True)
class Tracker:
    sessions: dict[str, _Session] = field(default_factory=dict)
    #: Sessions per document, and the sessions with presence to flush: kept alongside
    #: ``sessions`` so that neither a leave nor a flush scans every session.
    _per_doc: Counter[str] = field(default_factory=Counter)
    _pending: set[str] = field(default_factory=set)

    def participants(self, doc: str) -> int:
        return self._per_doc[doc]

    def _add(self, session: str, state: _Session) -> None:
        self._remove(session)
        self.sessions[session] = state
        self._per_doc[state.doc] += 1

    def _remove(self, session: str) -> _Session | None:
        gone = self.sessions.pop(session, None)
        if gone is not None:
            self._pending.discard(session)
            self._per_doc[gone.doc] -= 1
            if not self._per_doc[gone.doc]:
                del self._per_doc[gone.doc]
        return gone

    def gateways(self) -> set[str]:
        return {s.gateway for s in self.sessions.values()}

    def restore(self, doc: str, session: str, participant: bytes, gateway: str, now: float) -> None:
        """Re-learn a participant from the persisted roster after a restart."""
        data = _decode(participant)
        if isinstance(data, dict):
            self._add(session, _Session(doc, gateway, data, last_seen=now))

    def apply(self, update: PresenceUpdate, now: float) -> list[Action]:
        """Take one update from a gateway; return what to publish and persist now."""
        kind = update.kind
        if kind == "join":
            return self._join(update, now)
        if kind == "leave":
            return self._leave(update.session, update.reason or "closed")
        current = self.sessions.get(update.session)
        if current is None:
            return []
        current.last_seen = now
        if kind == "presence" and update.state:
            state = _decode(update.state)
            if isinstance(state, dict):
                current.pending = (state.get("v"), state.get("cursor"), state.get("meta"))
                self._pending.add(update.session)
        return []

    def _join(self, update: PresenceUpdate, now: float) -> list[Action]:
        participant = _decode(update.participant)
        if not isinstance(participant, dict):
            return []
        participant.setdefault("v", None)
        participant.setdefault("cursor", None)
        participant["session"] = update.session
        participant["gateway"] = update.gateway
        self._add(update.session, _Session(update.doc, update.gateway, participant, last_seen=now))
        public = {k: participant[k] for k in ("session", "user", "role") if k in participant}
        return [
            SaveParticipant(update.doc, update.session, _encode(participant)),
            Publish(update.doc, update.session, _encode({"type": "join", "participant": public})),
        ]

    def _leave(self, session: str, reason: str) -> list[Action]:
        gone = self._remove(session)
        if gone is None:
            return []
        frame = _encode({"type": "leave", "session": session, "reason": reason})
        return [DropParticipant(gone.doc, session), Publish(gone.doc, session, frame)]

    def flush(self) -> list[Action]:
        """Publish the latest presence of every session that changed since the last flush."""
        actions: list[Action] = []
        pending, self._pending = self._pending, set()
        for session in sorted(pending):
            state = self.sessions[session]
            if state.pending is None:
                continue
            v, cursor, meta = state.pending
            state.pending = None
            state.participant["v"] = v
            state.participant["cursor"] = cursor
            message: dict[str, object] = {
                "type": "presence",
                "session": session,
                "user": state.participant.get("user"),
                "v": v,
                "cursor": cursor,
            }
            if meta is not None:
                message["meta"] = meta
            actions.append(SaveParticipant(state.doc, session, _encode(state.participant)))
            actions.append(Publish(state.doc, session, _encode(message)))
        return actions

    def expire(self, alive_gateways: set[str]) -> list[Action]:
        """Sessions whose gateway stopped reporting leave with reason ``timeout``."""
        actions: list[Action] = []
        for session in [s for s, st in self.sessions.items() if st.gateway not in alive_gateways]:
            actions.extend(self._leave(session, "timeout"))
        return actions
