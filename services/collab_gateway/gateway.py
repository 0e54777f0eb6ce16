"""The gateway process's shared state and its I/O with Redis.

Holds the rooms, the one stream reader, the store and the token codec, and does what a
connection needs from Redis: build ``welcome`` (resume with ops or send the text),
forward ops and presence to the ingress streams, publish this gateway's load, and drain
on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
import zlib
from typing import Any

import msgspec
from redis.asyncio import Redis

from collab_core import fanout, keys, protocol, tracing
from collab_core.auth import Claims, TokenCodec
from collab_core.errors import CloseCode, ErrorCode, ProtocolError
from collab_core.ingress import PresenceUpdate, Submission
from collab_core.service import BLOCK_MS, REDIS_ERRORS, Supervisor
from collab_core.store import DocumentStore, LogEntry
from collab_gateway import metrics
from collab_gateway.reader import Reader
from collab_gateway.rooms import Member, Registry, Room, op_broadcast
from collab_gateway.session import SessionLimits
from collab_gateway.settings import GatewaySettings

log = logging.getLogger("collab.gateway")

INGRESS_MAXLEN = 1_000_000
#: Leaves kept for a later try while Redis is unavailable.
MAX_UNSENT_LEAVES = 100_000
#: Distinct, readable colours; a user keeps theirs on every device.
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#008080", "#9a6324", "#800000", "#808000", "#000075", "#e6beff",
)  # fmt: skip

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.encode


def color_of(user_id: str) -> str:
    return PALETTE[zlib.crc32(user_id.encode()) % len(PALETTE)]


class Refused(Exception):
    """A hello that passed authentication cannot be served: send ``error`` and close."""

    def __init__(self, error: ProtocolError, close: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.close = close


class Gateway:
    def __init__(self, settings: GatewaySettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.id = settings.gateway_id
        self.store = DocumentStore(redis)
        self.codec = TokenCodec(
            settings.jwt_secret.get_secret_value(),
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
        )
        self.registry = Registry()
        self.reader = Reader(redis, self.registry, self.id, block_ms=BLOCK_MS)
        self.limits = SessionLimits(
            messages_per_second=settings.messages_per_second,
            hello_timeout=settings.hello_timeout_seconds,
            wire=protocol.Limits(
                max_message_bytes=settings.max_message_bytes,
                max_op_components=settings.max_op_components,
                max_depth=settings.max_json_depth,
            ),
        )
        self.supervisor = Supervisor(redis, self._work, name="gateway", on_lost=self._lost)
        self._host_ttl = fanout.host_ttl(settings.load_report_seconds)
        self.draining = False
        self.per_user: dict[str, int] = {}
        self.seen_versions: dict[str, int] = {}
        self._messages = 0
        self._messages_rate = 0.0
        self._unsent_leaves: list[PresenceUpdate] = []

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.supervisor.ready and not self.draining

    @property
    def store_lost(self) -> bool:
        return self.supervisor.lost

    async def run(self) -> None:
        """Read streams and publish load until cancelled, riding out Redis outages."""
        await self.supervisor.run()

    async def _work(self) -> None:
        reporter = asyncio.create_task(self._report_loop(), name="gateway-load")
        try:
            await self.reader.run()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    def _lost(self) -> None:
        self.close_all(ErrorCode.INTERNAL, "the store lost its data", CloseCode.TRY_AGAIN_LATER)

    async def _report_loop(self) -> None:
        while True:
            try:
                await self.report_load()
                await self._resend_leaves()
            except REDIS_ERRORS as exc:
                # A gateway that stops reporting is taken for dead and its sessions are
                # expired by presence: retry next round rather than end the loop.
                log.warning("load report failed: %s", exc)
            await asyncio.sleep(self.settings.load_report_seconds)

    async def report_load(self) -> None:
        now = time.time()
        rooms = sorted(
            ((len(room.members), doc) for doc, room in self.registry.rooms.items()), reverse=True
        )
        report = {
            "gateway": self.id,
            "connections": self.registry.connection_count(),
            "rooms": len(rooms),
            "messages_per_second": round(self._messages_rate, 2),
            "largest_rooms": [{"doc": doc, "connections": n} for n, doc in rooms[:20]],
            "draining": self.draining,
            "ts": now,
        }
        elapsed = self.settings.load_report_seconds
        self._messages_rate = self._messages / elapsed
        self._messages = 0
        ttl = max(3 * int(elapsed), 15)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.gateway_load(self.id), _encode(report), ex=ttl)
            pipe.zadd(keys.GATEWAYS, {self.id: now})
            pipe.expire(keys.inbox(self.id), 300)
            # Renew this gateway's place among each hosted document's gateways.
            expiry = now + self._host_ttl
            for doc, room in list(self.registry.rooms.items()):
                if room.hosted:
                    pipe.zadd(keys.hosts(doc), {self.id: expiry})
                    # Gone with the last gateway that stops renewing it.
                    pipe.expire(keys.hosts(doc), math.ceil(self._host_ttl))
            await pipe.execute()

    def close_all(self, code: ErrorCode, message: str, close: int) -> None:
        frame = protocol.error_message(ProtocolError(code, message)).decode()
        for _, member in list(self.registry.sessions.values()):
            metrics.error_sent(code)
            member.outbox.put(frame)
            member.outbox.close(close, code.value)

    async def drain(self) -> None:
        """Ask every client to reconnect elsewhere, spread over the drain window, then close."""
        self.draining = True
        members = [member for _, member in self.registry.sessions.values()]
        random.shuffle(members)
        window = self.settings.drain_seconds
        step = window / len(members) if members else 0.0
        for n, member in enumerate(members):
            retry = int(random.uniform(100, 100 + 1000 * min(window, 5.0)))
            member.outbox.put(protocol.encode(protocol.Reconnect(retry_after_ms=retry)).decode())
            metrics.MESSAGES_OUT.labels("reconnect").inc()
            member.outbox.close(CloseCode.SERVICE_RESTART, "draining")
            if step and n < len(members) - 1:
                await asyncio.sleep(step)
        # Let writers flush their last frames.
        deadline = time.monotonic() + 2.0
        while self.registry.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll at shutdown
            await asyncio.sleep(0.05)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(keys.gateway_load(self.id))
                pipe.zrem(keys.GATEWAYS, self.id)
                pipe.delete(keys.inbox(self.id))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("could not remove load report: %s", exc)

    # -- connections -------------------------------------------------------------------

    def new_session_id(self) -> str:
        return f"s-{secrets.token_hex(6)}"

    def count_message(self) -> None:
        self._messages += 1

    def admit(self, user: str) -> bool:
        count = self.per_user.get(user, 0)
        if count >= self.settings.connections_per_user:
            return False
        self.per_user[user] = count + 1
        metrics.USERS.set(len(self.per_user))
        return True

    def release(self, user: str) -> None:
        count = self.per_user.get(user, 0) - 1
        if count <= 0:
            self.per_user.pop(user, None)
        else:
            self.per_user[user] = count
        metrics.USERS.set(len(self.per_user))

    async def welcome(self, doc: str, member: Member, claims: Claims, since: int | None) -> Room:
        """Join ``member`` to its room and queue its ``welcome``; raise :class:`Refused`."""
        room = self.registry.join(doc, member)
        if not room.hosted:
            # Before the head is read: a commit after this is notified to this gateway,
            # one before it is in what the welcome reads (collab_core.fanout).
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.hosts(doc), {self.id: time.time() + self._host_ttl})
                pipe.expire(keys.hosts(doc), math.ceil(self._host_ttl))
                await pipe.execute()
            room.hosted = True
        head = await self.store.head(doc)
        seen = max(room.seen_version, self.seen_versions.get(doc, 0))
        if head.version < seen:
            log.critical("document %s is at %d but %d was delivered", doc, head.version, seen)
            raise Refused(
                ProtocolError(
                    ErrorCode.INTERNAL, "the store lost recent versions of this document"
                ),
                CloseCode.TRY_AGAIN_LATER,
            )
        if since is not None and since > head.version:
            raise Refused(
                ProtocolError(
                    ErrorCode.INVALID_VERSION,
                    f"since {since} is ahead of the document ({head.version})",
                ),
                CloseCode.BAD_REQUEST,
            )
        text: str | None = None
        ops: list[protocol.OpBroadcast] | None = None
        if since is not None and head.version - since <= self.settings.catchup_max_ops:
            metrics.RESUMES.inc()
            entries = await self.store.entries(doc, since, head.version)
            ops = [op_broadcast(entry) for entry in entries]
        else:
            text = await self.store.text_at(doc, head.version)
        participants = await self.participants(doc, exclude=member.session)
        user = protocol.User(id=claims.sub, name=claims.name, color=color_of(claims.sub))
        welcome = protocol.Welcome(
            doc=doc,
            session=member.session,
            role=claims.role.value,
            user=user,
            version=head.version,
            text=text,
            ops=ops,
            participants=participants,
            heartbeat_ms=self.settings.heartbeat_ms,
            limits=protocol.ConnectionLimits(
                max_message_bytes=self.settings.max_message_bytes,
                messages_per_second=self.settings.messages_per_second,
            ),
        )
        missing: list[LogEntry] = []
        if room.version is None:
            room.version = head.version
            room.readable = max(room.readable, head.version)
            last: Any = await self.redis.xrevrange(keys.presence(doc), count=1)
            room.presence_cursor = last[0][0] if last else "0-0"
            await self.reader.wake(doc)
        elif room.version > head.version:
            # The room read further than this welcome: fetch what lies between.
            missing = await self.store.entries(doc, head.version, room.version)
        member.outbox.put(protocol.encode(welcome).decode())
        room.backlog_missing(member, missing)
        room.welcome_sent(member, head.version)
        metrics.MESSAGES_OUT.labels("welcome").inc()
        participant = {
            "session": member.session,
            "user": msgspec.to_builtins(user),
            "role": claims.role.value,
        }
        await self.update_presence(
            PresenceUpdate(
                kind="join",
                doc=doc,
                session=member.session,
                gateway=self.id,
                ts=time.time(),
                participant=_encode(participant),
            )
        )
        return room

    def left(self, doc: str, member: Member) -> None:
        found = self.registry.sessions.get(member.session)
        if found is not None:
            room = found[0]
            self.seen_versions[doc] = max(self.seen_versions.get(doc, 0), room.seen_version)
            if len(self.seen_versions) > 100_000:
                del self.seen_versions[next(iter(self.seen_versions))]
        self.registry.leave(member)

    async def participants(
        self, doc: str, exclude: str | None = None
    ) -> list[protocol.Participant]:
        roster: Any = await self.redis.hgetall(keys.roster(doc))
        result = []
        for session, raw in roster.items():
            if session.decode() == exclude:
                continue
            data = _decode(raw)
            try:
                result.append(
                    msgspec.convert(
                        {
                            k: data.get(k)
                            for k in ("session", "user", "role", "v", "cursor")
                            if data.get(k) is not None
                        },
                        protocol.Participant,
                    )
                )
            except msgspec.ValidationError:
                continue
        return result

    async def submit(self, submission: Submission) -> None:
        stream = keys.op_ingress(keys.shard_of(submission.doc, self.settings.ingress_shards))
        with tracing.send(stream) as traceparent:
            fields = submission.stream_fields()
            if traceparent:
                fields["tp"] = traceparent
            await self.redis.xadd(
                stream,
                fields,  # type: ignore[arg-type]
                maxlen=INGRESS_MAXLEN,
                approximate=True,
            )

    async def update_presence(self, update: PresenceUpdate) -> None:
        shard = keys.shard_of(update.doc, self.settings.ingress_shards)
        await self.redis.xadd(
            keys.presence_ingress(shard),
            update.stream_fields(),  # type: ignore[arg-type]
            maxlen=INGRESS_MAXLEN,
            approximate=True,
        )

    async def leave_presence(self, doc: str, session: str) -> None:
        """Tell presence that ``session`` left; if that fails, tell it later.

        A lost leave would keep the session in the roster for as long as this gateway
        lives, so it is kept and sent again with the next load report.
        """
        update = PresenceUpdate(
            kind="leave", doc=doc, session=session, gateway=self.id, ts=time.time(), reason="closed"
        )
        try:
            await self.update_presence(update)
        except Exception as exc:
            # Whatever failed, the leave is kept; only what is not a Redis outage (which
            # is reported where it is noticed) is worth a line per connection.
            if not isinstance(exc, REDIS_ERRORS):
                log.warning("presence leave of %s failed, kept to resend: %r", session, exc)
            if len(self._unsent_leaves) < MAX_UNSENT_LEAVES:
                self._unsent_leaves.append(update)

    async def _resend_leaves(self) -> None:
        while self._unsent_leaves:
            await self.update_presence(self._unsent_leaves[0])
            self._unsent_leaves.pop(0)
