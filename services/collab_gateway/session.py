"""Per-connection state machine of the gateway. Sans-I/O: no awaits, no clock, no Redis.

Feed it each client frame with :meth:`Session.receive` and the time with
:meth:`Session.tick`; each returns the actions the endpoint must carry out, in order.
It enforces what PROTOCOL.md asks of one connection: ``hello`` first and within the
deadline, a valid token for this document, the viewer role, the message rate (a token
bucket whose burst equals the limit), the escalation of repeated errors to a close, and
token expiry. Identity (``author``, ``session``, ``client``) comes from the token and
the server, never from a message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from collab_core import protocol
from collab_core.auth import Claims, TokenCodec
from collab_core.errors import CloseCode, ErrorCode, ProtocolError
from collab_core.ingress import PresenceUpdate, Submission

#: PROTOCOL.md: ``bad_message`` "closes 4000 after 20 on one connection".
MAX_BAD_MESSAGES = 20

_encode = msgspec.json.encode


class Phase(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame to the client.

    ``error`` is the code when the frame is an ``error`` message (the endpoint counts
    them); the session's only other frame is the heartbeat reply.
    """

    frame: bytes
    error: ErrorCode | None = None


@dataclass(frozen=True, slots=True)
class Authenticated:
    """``hello`` was accepted: build and send ``welcome``, then join the room."""

    claims: Claims
    client: str
    since: int | None


@dataclass(frozen=True, slots=True)
class Submit:
    """Forward this op to edit-transform."""

    submission: Submission


@dataclass(frozen=True, slots=True)
class UpdatePresence:
    """Forward this presence change to the presence service."""

    update: PresenceUpdate


@dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket with ``code`` (after sending any frames before this action)."""

    code: int
    reason: str = ""


Action = Send | Authenticated | Submit | UpdatePresence | Close


@dataclass(frozen=True, slots=True)
class SessionLimits:
    messages_per_second: int = 100
    hello_timeout: float = 10.0
    wire: protocol.Limits = protocol.DEFAULT_LIMITS


class Session:
    """One WebSocket connection to one document."""

    def __init__(
        self,
        *,
        doc: str,
        session_id: str,
        gateway_id: str,
        codec: TokenCodec,
        now: float,
        limits: SessionLimits = SessionLimits(),
    ) -> None:
        self.doc = doc
        self.session_id = session_id
        self.gateway_id = gateway_id
        self.codec = codec
        self.limits = limits
        self.phase = Phase.AWAITING_HELLO
        self.claims: Claims | None = None
        self.client: str | None = None
        self.hello_deadline = now + limits.hello_timeout
        self.bad_messages = 0
        self._tokens = float(limits.messages_per_second)
        self._refilled_at = now
        self._refusals = 0

    # -- inputs -------------------------------------------------------------------------

    def receive(self, frame: bytes | str, now: float) -> list[Action]:
        """Handle one client frame. Carry out the returned actions in order."""
        if self.phase is Phase.CLOSED:
            return []
        # A frame can arrive before the endpoint's next tick: the hello deadline and the
        # token's expiry hold for it too (PROTOCOL.md, "Connecting").
        expired = self.tick(now)
        if expired:
            return expired
        if not self._take_token(now):
            return self._rate_limited(frame)
        try:
            message = protocol.decode_client(frame, self.limits.wire)
        except ProtocolError as exc:
            if self.phase is Phase.AWAITING_HELLO and exc.close is None:
                # PROTOCOL.md, "Connecting": anything but a hello first is unauthorized.
                return self._fail(ErrorCode.UNAUTHORIZED, "the first message must be hello")
            if self.phase is Phase.OPEN and exc.code is ErrorCode.UNAUTHORIZED:
                # Only a hello carries a token, and this connection has had its hello: a
                # second one is bad_message whatever its token (as a valid one is, below).
                exc = ProtocolError(ErrorCode.BAD_MESSAGE, "hello was already received")
            return self._refuse(exc)
        if self.phase is Phase.AWAITING_HELLO:
            if not isinstance(message, protocol.Hello):
                return self._fail(ErrorCode.UNAUTHORIZED, "the first message must be hello")
            return self._hello(message, now)
        if isinstance(message, protocol.SubmitOp):
            return self._op(message, now)
        if isinstance(message, protocol.Presence):
            return self._presence(message, now)
        if isinstance(message, protocol.Heartbeat):
            reply = protocol.HeartbeatReply(timestamp=message.timestamp, server_time=now)
            return [Send(protocol.encode(reply))]
        return self._refuse(ProtocolError(ErrorCode.BAD_MESSAGE, "hello was already received"))

    def tick(self, now: float) -> list[Action]:
        """Enforce deadlines: the hello timeout and the token's expiry."""
        if self.phase is Phase.AWAITING_HELLO and now >= self.hello_deadline:
            return self._fail(ErrorCode.UNAUTHORIZED, "no hello within the deadline")
        if (
            self.phase is Phase.OPEN
            and self.claims is not None
            and now >= self.codec.expires_at(self.claims)
        ):
            return self._fail(ErrorCode.UNAUTHORIZED, "token expired")
        return []

    def closed(self) -> None:
        """The connection ended; nothing more is accepted."""
        self.phase = Phase.CLOSED

    # -- handlers -----------------------------------------------------------------------

    def _hello(self, hello: protocol.Hello, now: float) -> list[Action]:
        try:
            claims = self.codec.authorize(hello.token, self.doc, now=now)
        except ProtocolError as exc:
            return self._fail(exc.code, exc.message)
        self.phase = Phase.OPEN
        self.claims = claims
        self.client = hello.client
        return [Authenticated(claims, hello.client, hello.since)]

    def _op(self, msg: protocol.SubmitOp, now: float) -> list[Action]:
        claims = self.claims
        assert claims is not None
        assert self.client is not None
        if not claims.can_edit:
            return self._error(ErrorCode.FORBIDDEN, "viewers cannot edit", msg.id)
        submission = Submission(
            doc=self.doc,
            client=self.client,
            id=msg.id,
            v=msg.v,
            op=msg.op,
            author=claims.sub,
            session=self.session_id,
            gateway=self.gateway_id,
            ts=now,
        )
        return [Submit(submission)]

    def _presence(self, msg: protocol.Presence, now: float) -> list[Action]:
        state: dict[str, object] = {"v": msg.v, "cursor": msg.cursor, "meta": msg.meta}
        update = PresenceUpdate(
            kind="presence",
            doc=self.doc,
            session=self.session_id,
            gateway=self.gateway_id,
            ts=now,
            state=_encode(state),
        )
        return [UpdatePresence(update)]

    # -- errors -------------------------------------------------------------------------

    def _take_token(self, now: float) -> bool:
        rate = self.limits.messages_per_second
        elapsed = now - self._refilled_at
        if elapsed > 0:
            self._tokens = min(float(rate), self._tokens + elapsed * rate)
            self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._refusals = 0
            return True
        return False

    def _rate_limited(self, frame: bytes | str) -> list[Action]:
        self._refusals += 1
        # The op's id tells the client which op to send again (PROTOCOL.md: dropped).
        error = ProtocolError(
            ErrorCode.RATE_LIMITED,
            "too many messages",
            id=protocol.op_id(frame, self.limits.wire),
        )
        actions: list[Action] = [Send(protocol.error_message(error), error.code)]
        if self._refusals >= 2 * self.limits.messages_per_second:
            self.phase = Phase.CLOSED
            actions.append(Close(CloseCode.RATE_LIMITED, "rate limited"))
        return actions

    def _refuse(self, exc: ProtocolError) -> list[Action]:
        actions: list[Action] = [Send(protocol.error_message(exc), exc.code)]
        if exc.close is not None:
            self.phase = Phase.CLOSED
            actions.append(Close(exc.close, exc.code.value))
            return actions
        if exc.code is ErrorCode.BAD_MESSAGE:
            self.bad_messages += 1
            if self.bad_messages >= MAX_BAD_MESSAGES:
                self.phase = Phase.CLOSED
                actions.append(Close(CloseCode.BAD_REQUEST, "too many bad messages"))
        return actions

    def _error(self, code: ErrorCode, message: str, op_id: str | None = None) -> list[Action]:
        return [Send(protocol.error_message(ProtocolError(code, message, id=op_id)), code)]

    def _fail(self, code: ErrorCode, message: str) -> list[Action]:
        """Send the error and close with its code (unauthorized, forbidden_document)."""
        error = ProtocolError(code, message)
        self.phase = Phase.CLOSED
        close = error.close if error.close is not None else CloseCode.BAD_REQUEST
        return [Send(protocol.error_message(error), code), Close(close, code.value)]
