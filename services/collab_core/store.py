"""Reading documents from Redis: head, committed ops, text at a version, the store epoch.

Shared by the gateway (welcome, HTTP API) and edit-transform (its view before a
commit). Writing a document's log is edit-transform's alone (``collab_transform.commit``).

A committed op is one entry of ``collab:{d:<id>}:log`` whose id is ``<v+1>-0`` and whose
fields are those of :class:`LogEntry`. The op is stored as the JSON text it is sent in,
so fan-out copies it into frames without decoding it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis

from collab_core import keys, ot

_json_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class LogEntry:
    """One committed op as stored in the document log."""

    v: int
    op_json: bytes
    client: str
    id: str
    author: str
    session: str
    ts: float
    #: The version the op was submitted against (before the server transformed it).
    base: int
    #: Digest of the op as submitted; a resend with the same id must match it.
    digest: str
    traceparent: str = ""
    _op: ot.Op | None = field(default=None, repr=False, compare=False)

    @property
    def op(self) -> ot.Op:
        """The op, decoded on first use (fan-out never needs it decoded)."""
        if self._op is None:
            self._op = _json_decode(self.op_json)
        return self._op

    @classmethod
    def from_stream(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> LogEntry:
        return cls(
            v=keys.version_of_entry(entry_id),
            op_json=fields[b"op"],
            client=fields[b"client"].decode(),
            id=fields[b"id"].decode(),
            author=fields[b"author"].decode(),
            session=fields[b"session"].decode(),
            ts=float(fields[b"ts"]),
            base=int(fields[b"base"]),
            digest=fields[b"digest"].decode(),
            traceparent=fields.get(b"tp", b"").decode(),
        )

    def stream_fields(self) -> dict[str, bytes | str | int | float]:
        return {
            "op": self.op_json,
            "client": self.client,
            "id": self.id,
            "author": self.author,
            "session": self.session,
            "ts": repr(self.ts),
            "base": self.base,
            "digest": self.digest,
            "tp": self.traceparent,
        }


class StoreLost(RuntimeError):
    """The store's epoch changed or vanished: Redis came back empty or was replaced."""


@dataclass(frozen=True, slots=True)
class Head:
    version: int
    length: int


class DocumentStore:
    """Read access to documents. Every method is one or two round trips to Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def head(self, document_id: str, *, committed: bool = False) -> Head:
        """The version readers may see: every op below it is as durable as the deployment
        asks (with edit-transform's ``wait_replicas``, on that many replicas). With
        ``committed``, the version of the last commit, which only edit-transform needs."""
        raw: Sequence[Any] = await self.redis.hmget(
            keys.head(document_id), "version", "visible", "length"
        )
        version, visible, length = raw
        if visible is not None and not committed:
            return Head(int(visible), 0)
        return Head(int(version or 0), int(length or 0))

    async def entries(
        self, document_id: str, start: int, stop: int | None = None
    ) -> list[LogEntry]:
        """Committed ops with ``start <= v < stop`` (``stop=None``: to the head), in order."""
        if stop is not None and stop <= start:
            return []
        upper = "+" if stop is None else keys.log_entry_id(stop - 1)
        rows: Any = await self.redis.xrange(keys.log(document_id), keys.log_entry_id(start), upper)
        return [LogEntry.from_stream(entry_id, fields) for entry_id, fields in rows]

    async def snapshot_at_or_below(self, document_id: str, version: int) -> tuple[int, str]:
        """The newest snapshot at or below ``version``; ``(0, "")`` when there is none."""
        found: Any = await self.redis.zrevrangebyscore(
            keys.snapshots(document_id), version, 0, start=0, num=1
        )
        if not found:
            return 0, ""
        snap_version = int(found[0])
        text: Any = await self.redis.get(keys.snapshot(document_id, snap_version))
        if text is None:
            # A snapshot listed but missing is a corrupted store; replay from the start.
            return 0, ""
        return snap_version, text.decode()

    async def text_at(self, document_id: str, version: int) -> str:
        """The document's text at ``version`` (which must not be above the head)."""
        base, text = await self.snapshot_at_or_below(document_id, version)
        for entry in await self.entries(document_id, base, version):
            text = ot.apply(text, entry.op)
        return text

    async def current(self, document_id: str, *, committed: bool = False) -> tuple[int, str]:
        """The head version and the text at it, consistent with each other."""
        head = await self.head(document_id, committed=committed)
        return head.version, await self.text_at(document_id, head.version)


class Epoch:
    """The store's identity: a random value created once in an empty Redis.

    A service remembers the epoch it first saw. If Redis later answers with another
    epoch, or none, it lost its data (restarted without its AOF, or was replaced), and
    the service must refuse to serve documents rather than restart them at version 0
    (DESIGN.md invariant 2).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.value: str | None = None

    async def adopt(self) -> str:
        """Read the epoch, creating it if Redis has none; remember it. Call once at start."""
        await self.redis.set(keys.EPOCH, secrets.token_hex(8), nx=True)
        raw: Any = await self.redis.get(keys.EPOCH)
        if raw is None:
            raise StoreLost("the store epoch vanished while it was being created")
        self.value = raw.decode()
        return self.value

    async def verify(self) -> None:
        """Raise :class:`StoreLost` unless Redis still has the epoch adopted at start."""
        raw: Any = await self.redis.get(keys.EPOCH)
        if raw is None or raw.decode() != self.value:
            raise StoreLost("the store epoch changed: redis lost its data or was replaced")
