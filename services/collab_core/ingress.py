"""Entries of the ingress streams: what a gateway hands to edit-transform and presence.

The gateway writes them with identity taken from the token and the server (``author``,
``session``, ``gateway``), never from the client's message. The consumers read them
back with the same field names, defined only here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from collab_core import ot

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder().decode

Fields = dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Submission:
    """An op submitted by a client, as forwarded by its gateway."""

    doc: str
    client: str
    id: str
    v: int
    op: ot.Op
    author: str
    session: str
    gateway: str
    ts: float
    traceparent: str = ""

    @property
    def digest(self) -> str:
        """Identifies the content of the submission: its base version and its op."""
        return hashlib.blake2b(_encode([self.v, self.op]), digest_size=12).hexdigest()

    def stream_fields(self) -> dict[str, str | bytes | int]:
        return {
            "doc": self.doc,
            "client": self.client,
            "id": self.id,
            "v": self.v,
            "op": _encode(self.op),
            "author": self.author,
            "session": self.session,
            "gw": self.gateway,
            "ts": repr(self.ts),
            "tp": self.traceparent,
        }

    @classmethod
    def from_stream(cls, fields: Fields) -> Submission:
        return cls(
            doc=fields[b"doc"].decode(),
            client=fields[b"client"].decode(),
            id=fields[b"id"].decode(),
            v=int(fields[b"v"]),
            op=_decode(fields[b"op"]),
            author=fields[b"author"].decode(),
            session=fields[b"session"].decode(),
            gateway=fields[b"gw"].decode(),
            ts=float(fields[b"ts"]),
            traceparent=fields.get(b"tp", b"").decode(),
        )


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """A presence change of one session, from its gateway.

    ``kind`` is ``join`` (``participant`` set), ``presence`` (``state`` set: the
    client's ``v``, ``cursor`` and ``meta`` as JSON), ``leave`` (``reason`` set) or
    ``renew`` (the session is alive; sent periodically so presence can expire sessions
    whose gateway died).
    """

    kind: str
    doc: str
    session: str
    gateway: str
    ts: float
    participant: bytes = b""
    state: bytes = b""
    reason: str = ""

    def stream_fields(self) -> dict[str, str | bytes]:
        fields: dict[str, str | bytes] = {
            "kind": self.kind,
            "doc": self.doc,
            "session": self.session,
            "gw": self.gateway,
            "ts": repr(self.ts),
        }
        if self.participant:
            fields["participant"] = self.participant
        if self.state:
            fields["state"] = self.state
        if self.reason:
            fields["reason"] = self.reason
        return fields

    @classmethod
    def from_stream(cls, fields: Fields) -> PresenceUpdate:
        return cls(
            kind=fields[b"kind"].decode(),
            doc=fields[b"doc"].decode(),
            session=fields[b"session"].decode(),
            gateway=fields[b"gw"].decode(),
            ts=float(fields[b"ts"]),
            participant=fields.get(b"participant", b""),
            state=fields.get(b"state", b""),
            reason=fields.get(b"reason", b"").decode(),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A message from a back-end service to one session on one gateway.

    ``kind`` is ``error`` (``code`` and ``message``) or ``ack`` (a duplicate op
    acknowledged again at ``v``).
    """

    kind: str
    session: str
    id: str
    v: int = -1
    code: str = ""
    message: str = ""

    def stream_fields(self) -> dict[str, str | int]:
        return {
            "kind": self.kind,
            "session": self.session,
            "id": self.id,
            "v": self.v,
            "code": self.code,
            "message": self.message,
        }

    @classmethod
    def from_stream(cls, fields: Fields) -> Reply:
        return cls(
            kind=fields[b"kind"].decode(),
            session=fields[b"session"].decode(),
            id=fields[b"id"].decode(),
            v=int(fields.get(b"v", b"-1")),
            code=fields.get(b"code", b"").decode(),
            message=fields.get(b"message", b"").decode(),
        )
