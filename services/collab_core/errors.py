"""Error codes and WebSocket close codes of the wire protocol.

PROTOCOL.md, "Errors and close codes", is the reference for every value here.

Every client-visible failure is a :class:`ProtocolError` carrying one :class:`ErrorCode`.
The tree::

    ProtocolError                  a client message or request was refused
      code: ErrorCode              stable, documented wire code
      close: int | None            close code when the connection must end, else None

Non-fatal codes leave the connection open; fatal ones name the close code to use. The
gateway decides escalations that depend on counts (20 ``bad_message`` on one connection,
2 x the rate limit of consecutive ``rate_limited``); that policy lives with the session.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    BAD_MESSAGE = "bad_message"
    INVALID_OP = "invalid_op"
    INVALID_VERSION = "invalid_version"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN_DOCUMENT = "forbidden_document"
    SLOW_CONSUMER = "slow_consumer"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes. 1xxx are RFC 6455 section 7.4.1; 4xxx are ours."""

    NORMAL = 1000
    GOING_AWAY = 1001
    #: Never sent: what a server reports for a connection that ended without a close
    #: code (1005) or without a close frame (1006).
    NO_STATUS = 1005
    ABNORMAL = 1006
    MESSAGE_TOO_BIG = 1009
    #: Sent by uvicorn when a ping goes unanswered (PROTOCOL.md, "Liveness").
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4000
    UNAUTHORIZED = 4001
    FORBIDDEN_DOCUMENT = 4003
    RATE_LIMITED = 4008
    SLOW_CONSUMER = 4009


#: Close codes of the errors that end the connection at once.
FATAL: dict[ErrorCode, CloseCode] = {
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN_DOCUMENT: CloseCode.FORBIDDEN_DOCUMENT,
    ErrorCode.SLOW_CONSUMER: CloseCode.SLOW_CONSUMER,
}


class ProtocolError(Exception):
    """A refusal with a wire error code. ``message`` is a short lowercase fact.

    ``id`` is the op id the error answers, when there is one. ``close`` is the close
    code when the connection must end after the error is sent.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        id: str | None = None,
        close: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.close = close if close is not None else FATAL.get(code)

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r})"
