"""``/v1/collaborate/{document_id}``: the WebSocket route. I/O only.

Two tasks per connection: this read loop, which feeds frames to the connection's
:class:`~collab_gateway.session.Session` and carries out its actions, and a writer that
drains the connection's bounded :class:`~collab_gateway.rooms.Outbox`. Fan-out only
ever queues, so a slow reader never blocks a room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from collab_core import protocol, tracing
from collab_core.auth import is_document_id
from collab_core.errors import CloseCode, ErrorCode, ProtocolError
from collab_core.service import REDIS_ERRORS
from collab_gateway import metrics
from collab_gateway.gateway import Gateway, Refused
from collab_gateway.rooms import CloseFrame, Member, Outbox
from collab_gateway.session import (
    Action,
    Authenticated,
    Close,
    Send,
    Session,
    Submit,
    UpdatePresence,
)

log = logging.getLogger("collab.gateway")


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Browsers send ``Origin``; refuse cross-site pages not on the allowlist (CWE-1385)."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc == host


async def _write(websocket: WebSocket, outbox: Outbox) -> None:
    while True:
        item = await outbox.next()
        if isinstance(item, CloseFrame):
            with contextlib.suppress(RuntimeError, *REDIS_ERRORS):
                await websocket.close(item.code, item.reason)
            return
        metrics.SEND_QUEUE.observe(outbox.queue.qsize())
        await websocket.send_text(item)


async def collaborate(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    document_id = websocket.path_params["document_id"]
    if not origin_allowed(
        websocket.headers.get("origin"),
        websocket.headers.get("host"),
        gateway.settings.allowed_origins,
    ):
        # Closing before accept answers the upgrade with 403.
        await websocket.close(CloseCode.BAD_REQUEST)
        metrics.DISCONNECTS.labels("origin").inc()
        return
    await websocket.accept()
    if not is_document_id(document_id):
        # PROTOCOL.md: complete the upgrade, then close 4000 at once.
        await websocket.close(CloseCode.BAD_REQUEST, "invalid document id")
        metrics.DISCONNECTS.labels("bad_document_id").inc()
        return
    if not gateway.ready:
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "not ready")
        metrics.DISCONNECTS.labels("not_ready").inc()
        return
    metrics.CONNECTS.inc()
    connection = Connection(gateway, websocket, document_id)
    await connection.serve()


def _disconnect_reason(websocket: WebSocket, code: int | None) -> str:
    if code not in (CloseCode.NO_STATUS, CloseCode.ABNORMAL):
        return "client_closed"
    # No close code: the connection dropped, or it ended after a close frame from this
    # side. uvicorn fails a connection whose pong is late with 1011 and reports it like
    # any other, so the close frame it sent tells them apart.
    protocol = getattr(websocket._receive, "__self__", None)
    sent = getattr(getattr(protocol, "conn", None), "close_sent", None)
    if sent is None:
        return "connection_lost"
    return metrics.HEARTBEAT_TIMEOUT if sent.code == CloseCode.INTERNAL_ERROR else "server_closed"


class Connection:
    def __init__(self, gateway: Gateway, websocket: WebSocket, doc: str) -> None:
        self.gateway = gateway
        self.websocket = websocket
        self.doc = doc
        now = time.time()
        self.session = Session(
            doc=doc,
            session_id=gateway.new_session_id(),
            gateway_id=gateway.id,
            codec=gateway.codec,
            now=now,
            limits=gateway.limits,
        )
        self.outbox = Outbox(gateway.settings.send_queue_frames)
        self.member: Member | None = None
        self.admitted_user: str | None = None
        self.reason = "closed"

    async def serve(self) -> None:
        writer = asyncio.create_task(_write(self.websocket, self.outbox), name="ws-writer")
        try:
            await self._read(writer)
        finally:
            await self._cleanup(writer)

    async def _read(self, writer: asyncio.Task[None]) -> None:
        session = self.session
        while not self.outbox.closing and not writer.done():
            timeout = self._next_deadline() - time.time()
            try:
                message = await asyncio.wait_for(self.websocket.receive(), max(timeout, 0.001))
            except TimeoutError:
                if not await self._carry_out(session.tick(time.time())):
                    return
                continue
            if message["type"] == "websocket.disconnect":
                self.reason = _disconnect_reason(self.websocket, message.get("code"))
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            self.gateway.count_message()
            if not await self._carry_out(session.receive(frame, time.time())):
                return

    def _next_deadline(self) -> float:
        session = self.session
        if session.claims is None:
            return session.hello_deadline
        return min(session.codec.expires_at(session.claims), time.time() + 60.0)

    async def _carry_out(self, actions: Sequence[Action]) -> bool:
        """Carry out a session's actions; False when the connection is to end."""
        for action in actions:
            if isinstance(action, Send):
                if action.error is None:
                    metrics.MESSAGES_IN.labels("heartbeat").inc()
                    metrics.MESSAGES_OUT.labels("heartbeat").inc()
                else:
                    metrics.error_sent(action.error)
                self.outbox.put(action.frame.decode())
            elif isinstance(action, Submit):
                metrics.MESSAGES_IN.labels("op").inc()
                started = time.perf_counter()
                with tracing.receive("receive op", action.submission.ts):
                    try:
                        await self.gateway.submit(action.submission)
                    except REDIS_ERRORS:
                        self._error(
                            ErrorCode.INTERNAL, "not forwarded; resend", action.submission.id
                        )
                        continue
                metrics.RECEIVE_TO_FORWARD_SECONDS.observe(time.perf_counter() - started)
            elif isinstance(action, UpdatePresence):
                metrics.MESSAGES_IN.labels("presence").inc()
                if self.member is not None and self.member.ready:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await self.gateway.update_presence(action.update)
            elif isinstance(action, Authenticated):
                metrics.MESSAGES_IN.labels("hello").inc()
                if not await self._join(action):
                    return False
            elif isinstance(action, Close):
                self.reason = action.reason or "closed"
                self.outbox.close(action.code, action.reason)
                return False
        return True

    async def _join(self, hello: Authenticated) -> bool:
        claims = hello.claims
        if not self.gateway.admit(claims.sub):
            self._error(ErrorCode.RATE_LIMITED, "too many connections for this user")
            self.outbox.close(CloseCode.RATE_LIMITED, "connection limit")
            self.reason = "connection_limit"
            return False
        self.admitted_user = claims.sub
        self.member = Member(
            session=self.session.session_id,
            user=claims.sub,
            client=hello.client,
            outbox=self.outbox,
        )
        try:
            await self.gateway.welcome(self.doc, self.member, claims, hello.since)
        except Refused as refused:
            metrics.error_sent(refused.error.code)
            self.outbox.put(protocol.error_message(refused.error).decode())
            self.outbox.close(refused.close, refused.error.code.value)
            self.reason = refused.error.code.value
            return False
        except REDIS_ERRORS:
            self._error(ErrorCode.INTERNAL, "store unavailable")
            self.outbox.close(CloseCode.TRY_AGAIN_LATER, "store unavailable")
            self.reason = "store_unavailable"
            return False
        return True

    def _error(self, code: ErrorCode, message: str, op_id: str | None = None) -> None:
        metrics.error_sent(code)
        self.outbox.put(protocol.error_message(ProtocolError(code, message, id=op_id)).decode())

    async def _cleanup(self, writer: asyncio.Task[None]) -> None:
        self.session.closed()
        member = self.member
        # What is local comes first: a frozen or failing Redis below must not hold the
        # user's connection slot, the room or the close frame.
        if member is not None:
            self.gateway.left(self.doc, member)
        if self.admitted_user is not None:
            self.gateway.release(self.admitted_user)
            self.admitted_user = None
        if self.outbox.cut_off:
            self.reason = metrics.SLOW_CONSUMER
        if not writer.done():
            # Give the writer a moment to send the final error and close frame.
            self.outbox.close(CloseCode.NORMAL)
            try:
                await asyncio.wait_for(asyncio.shield(writer), 2.0)
            except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                writer.cancel()
        with contextlib.suppress(
            asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
        ):
            await writer
        metrics.DISCONNECTS.labels(self.reason).inc()
        if member is not None:
            await self.gateway.leave_presence(self.doc, member.session)
