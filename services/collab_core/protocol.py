"""Wire messages of protocol version 1 (PROTOCOL.md): their models, decoding and encoding.

This module owns the shape of every frame. Client frames go through
:func:`decode_client`, which returns a typed message or raises
:class:`~collab_core.errors.ProtocolError`, never anything else, whatever the input.
Server messages are built as structs and turned into bytes with :func:`encode`; encode a
broadcast once and send the same bytes to every connection. :func:`decode_server` is the
client side's counterpart. Pure: no I/O, no clock.

Choices where PROTOCOL.md is silent (each is tested in ``test_protocol.py``):

- Lone surrogates (``"\\ud800"``) anywhere, even inside an op insert, are ``bad_message``:
  msgspec refuses them while parsing, before any field is known.
- A protocol field name (:data:`FIELD_NAMES`) repeated within one JSON object is
  ``bad_message``. Other repeated keys (``{"d": 1, "d": 2}`` in an op, unknown keys in
  ``meta``) keep the last value, as ``JSON.parse`` does; the server re-encodes what it
  decoded, so every receiver sees that same value.
- JSON nested deeper than ``max_depth`` anywhere in the frame (the message object is
  level 1), unknown fields included, is ``bad_message``.
- ``v``, ``since``, cursor positions and ``timestamp`` must lie within
  ±(2**53 - 1), the integers a JavaScript client holds exactly; a negative ``v``, ``since``
  or position is ``bad_message`` (it is no version at all, so not ``invalid_version``).
- An op of more than ``max_op_components`` components is ``invalid_op``; so is a
  component number too large to parse. A ``bad_message`` or ``invalid_op`` answering an
  ``op`` frame carries its ``id`` whenever that ``id`` itself is valid.
- ``hello``: a missing, non-string, empty or oversized ``token`` is ``unauthorized``
  (PROTOCOL.md, "Connecting": a missing or malformed token), checked after the frame's
  structure; ``client`` follows the document id rule ``^[A-Za-z0-9._-]{1,128}$`` (safe in
  Redis keys and logs, and a UUID fits) and ``"server"`` is reserved for restore ops.
- ``presence``: ``cursor`` is required (``null`` clears it), since every presence update
  replaces the previous one; ``"meta": null`` means no meta. ``meta`` is measured as the
  compact JSON the server relays.
- A ``welcome`` carries exactly one of ``text`` and ``ops``. In ``op`` messages
  ``session`` is omitted when the op has none (a restore, or history from before sessions).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, Meta, UnsetType

from collab_core import ot
from collab_core.errors import CloseCode, ErrorCode, ProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "FIELD_NAMES",
    "MAX_SAFE_INTEGER",
    "Ack",
    "ClientMessage",
    "ConnectionLimits",
    "Cursor",
    "Error",
    "Heartbeat",
    "HeartbeatReply",
    "Hello",
    "Join",
    "Leave",
    "Limits",
    "OpBroadcast",
    "Participant",
    "Presence",
    "PresenceBroadcast",
    "Reconnect",
    "Role",
    "ServerMessage",
    "SubmitOp",
    "User",
    "Welcome",
    "decode_client",
    "decode_server",
    "encode",
    "error_message",
    "op_id",
]

#: JavaScript's ``Number.MAX_SAFE_INTEGER``: larger integers do not survive a JS client.
MAX_SAFE_INTEGER = 2**53 - 1

#: Keys that mean something in a client message; repeating one in an object is refused.
FIELD_NAMES = frozenset(
    {
        "type",
        "id",
        "v",
        "op",
        "token",
        "client",
        "since",
        "cursor",
        "meta",
        "timestamp",
        "anchor",
        "head",
    }
)

Role: TypeAlias = Literal["editor", "viewer"]
_Count: TypeAlias = Annotated[int, Meta(ge=0, le=MAX_SAFE_INTEGER)]
_Timestamp: TypeAlias = (
    Annotated[int, Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
    | Annotated[float, Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
)

if TYPE_CHECKING:
    _ClientOp: TypeAlias = ot.Op
else:
    # The parser only checks that `op` is an array: a bad component must be invalid_op,
    # not bad_message (PROTOCOL.md, errors table), so ot.check judges the components.
    _ClientOp = list[Any]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds applied by :func:`decode_client`. Sizes in bytes, lengths in code points."""

    max_message_bytes: int = 262144
    max_op_components: int = 10000
    max_depth: int = 32
    max_meta_bytes: int = 1024
    max_id_chars: int = 64
    max_client_chars: int = 128
    max_token_chars: int = 8192


DEFAULT_LIMITS = Limits()


class _Message(msgspec.Struct, tag_field="type", frozen=True, kw_only=True, omit_defaults=True):
    pass


class Cursor(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    anchor: _Count
    head: _Count


class User(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    name: str
    color: str


# Client messages (PROTOCOL.md, "Connecting", "Editing", "Presence", "Liveness").


class Hello(_Message, tag="hello", frozen=True, kw_only=True):
    token: str
    client: str
    since: _Count | None = None


class SubmitOp(_Message, tag="op", frozen=True, kw_only=True, gc=False):
    """An op as the author sends it. Decoded, ``op`` is checked and normalised."""

    id: Annotated[str, Meta(min_length=1)]
    v: _Count
    op: _ClientOp


class Presence(_Message, tag="presence", frozen=True, kw_only=True, gc=False):
    v: _Count
    cursor: Cursor | None
    meta: dict[str, Any] | None = None


class Heartbeat(_Message, tag="heartbeat", frozen=True, kw_only=True, gc=False):
    timestamp: _Timestamp


ClientMessage: TypeAlias = Hello | SubmitOp | Presence | Heartbeat


class _HelloFrame(_Message, tag="hello", frozen=True, kw_only=True):
    # Any, so that a bad token is unauthorized rather than bad_message.
    token: Any = None
    client: str
    since: _Count | None = None


class _IdProbe(msgspec.Struct):
    type: Any = None
    id: Any = None


# Server messages.


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_message_bytes: int
    messages_per_second: int


class Participant(msgspec.Struct, frozen=True, kw_only=True):
    """Another session. ``join`` leaves out ``v`` and ``cursor``; ``welcome`` has them once
    that session has sent presence (``cursor`` may then be ``null``)."""

    session: str
    user: User
    role: Role
    v: int | UnsetType = UNSET
    cursor: Cursor | UnsetType | None = UNSET


class OpBroadcast(_Message, tag="op", frozen=True, kw_only=True, gc=False):
    v: int
    op: ot.Op
    id: str
    client: str
    author: str
    session: str | None = None


class Welcome(_Message, tag="welcome", frozen=True, kw_only=True):
    doc: str
    session: str
    role: Role
    user: User
    version: int
    text: str | None = None
    ops: list[OpBroadcast] | None = None
    participants: list[Participant]
    heartbeat_ms: int
    limits: ConnectionLimits

    def __post_init__(self) -> None:
        if (self.text is None) == (self.ops is None):
            raise ValueError("welcome carries exactly one of text and ops")


class Ack(_Message, tag="ack", frozen=True, kw_only=True, gc=False):
    id: str
    v: int


class PresenceBroadcast(_Message, tag="presence", frozen=True, kw_only=True, gc=False):
    session: str
    user: User
    v: int
    cursor: Cursor | None
    meta: dict[str, Any] | None = None


class Join(_Message, tag="join", frozen=True, kw_only=True):
    participant: Participant


class Leave(_Message, tag="leave", frozen=True, kw_only=True):
    session: str
    reason: Literal["closed", "timeout"]


class Error(_Message, tag="error", frozen=True, kw_only=True, gc=False):
    code: ErrorCode
    id: str | None = None
    message: str


class Reconnect(_Message, tag="reconnect", frozen=True, kw_only=True):
    retry_after_ms: int


class HeartbeatReply(_Message, tag="heartbeat", frozen=True, kw_only=True, gc=False):
    timestamp: int | float
    server_time: float


ServerMessage: TypeAlias = (
    Welcome
    | Ack
    | OpBroadcast
    | PresenceBroadcast
    | Join
    | Leave
    | Error
    | Reconnect
    | HeartbeatReply
)

_ENCODER = msgspec.json.Encoder()
_ClientFrame: TypeAlias = _HelloFrame | SubmitOp | Presence | Heartbeat
_CLIENT_DECODER: msgspec.json.Decoder[_ClientFrame] = msgspec.json.Decoder(_ClientFrame)
_SERVER_DECODER: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_ID_PROBE = msgspec.json.Decoder(_IdProbe)

_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]+")
_RESERVED_CLIENTS = frozenset({"server"})

# A protocol field name written literally as a key, and one with a letter written as a
# \u escape (JSON has no other escape for a letter). Both over-approximate; the precise
# check runs only when they find a repeat or an escaped key.
_KEY = re.compile(rb'"([a-z]+)"[ \t\n\r]*:')
_ESCAPED_KEY = re.compile(
    rb'"(?:[a-z]|\\u00[67][0-9a-fA-F])*\\u00[67][0-9a-fA-F](?:[a-z]|\\u00[67][0-9a-fA-F])*"'
    rb"[ \t\n\r]*:"
)
_FIELD_KEYS = frozenset(name.encode() for name in FIELD_NAMES)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_SIGNED = bytes.maketrans(b"[]", b"\x01\xff")
# Errors the parser raises besides its own: UnicodeError (invalid UTF-8) is a ValueError;
# RecursionError guards nesting the pre-scan did not measure.
_PARSE_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)


class _DuplicateField(Exception):
    pass


def _bad(message: str, id: str | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, message, id=id)


def _fact(text: str) -> str:
    """A parser error as a short lowercase fact; it may quote input, so it is bounded."""
    text = text[:1].lower() + text[1:]
    return text if len(text) <= 160 else text[:159] + "…"


def _too_deep(data: bytes, max_depth: int) -> bool:
    """Whether the JSON in ``data`` nests arrays and objects more than ``max_depth`` deep.

    No recursion, and linear in practice: a 256 KiB frame built to be slow takes about
    10 ms. Exact for valid JSON; for invalid JSON either answer will do, since the parser
    refuses it anyway.
    """
    # Dropping escaped backslashes first leaves every remaining \" an escaped quote, so
    # after dropping those the quotes alternate opening and closing strings.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(_BRACKETS, _NOT_BRACKETS)
    if b"[" * (max_depth + 1) in brackets:
        return True
    # Deleting every "[]" peels off the innermost level (replace() does not rescan its
    # output). Repeat while that shrinks the text fast, then walk the rest once.
    levels = 0
    while brackets and levels <= max_depth:
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) * 8 > len(brackets) * 7:
            break
        brackets = shorter
        levels += 1
    if not brackets:
        return levels > max_depth
    steps = memoryview(brackets.translate(_SIGNED)).cast("b")
    return levels + max(itertools.accumulate(steps), default=0) > max_depth


def _reject_repeated_fields(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen and key in FIELD_NAMES:
            raise _DuplicateField(key)
        seen.add(key)


def _ignore(_: str) -> None:
    return None


def _check_repeated_fields(data: bytes) -> None:
    keys = _KEY.findall(data)
    distinct = set(keys)
    # Counting only field names keeps this linear when an op repeats "d" thousands of times.
    repeated = len(keys) != len(distinct) and any(keys.count(k) > 1 for k in distinct & _FIELD_KEYS)
    escaped = b"\\u00" in data and _ESCAPED_KEY.search(data) is not None
    if not repeated and not escaped:
        return
    try:
        # The frame parsed already; number values are skipped so huge ones cost nothing.
        json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_repeated_fields,
            parse_int=_ignore,
            parse_float=_ignore,
            parse_constant=_ignore,
        )
    except _DuplicateField as e:
        raise _bad(f"duplicate field {e.args[0]!r}") from None
    except (ValueError, RecursionError):
        raise _bad("malformed json") from None


def _probe_op_id(data: bytes, limits: Limits) -> str | None:
    """The ``id`` of an ``op`` frame that failed validation, if that ``id`` is valid."""
    try:
        probe = _ID_PROBE.decode(data)
    except _PARSE_ERRORS:
        return None
    if probe.type == "op" and type(probe.id) is str and 0 < len(probe.id) <= limits.max_id_chars:
        return probe.id
    return None


def op_id(frame: bytes | str, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The ``id`` of an ``op`` frame without validating the rest, or None.

    For errors that refuse a frame before decoding it (``rate_limited``): the client
    learns which op was dropped and can send it again.
    """
    try:
        data = _as_bytes(frame, limits)
    except ProtocolError:
        return None
    return _probe_op_id(data, limits)


def _too_large(limits: Limits) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_LARGE,
        f"message is larger than {limits.max_message_bytes} bytes",
        close=CloseCode.MESSAGE_TOO_BIG,
    )


def _as_bytes(frame: object, limits: Limits) -> bytes:
    # Size first, before any parsing (PROTOCOL.md errors table: too_large, then 1009).
    if isinstance(frame, bytes):
        data = frame
    elif isinstance(frame, str):
        # A code point takes at least one UTF-8 byte: a long str is too large unencoded.
        if len(frame) > limits.max_message_bytes:
            raise _too_large(limits)
        try:
            data = frame.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("frame is not valid utf-8") from None
    elif isinstance(frame, bytearray | memoryview):
        view = memoryview(frame)
        if view.nbytes > limits.max_message_bytes:
            raise _too_large(limits)
        data = view.tobytes()
    else:
        raise _bad("frame must be text")
    if len(data) > limits.max_message_bytes:
        raise _too_large(limits)
    return data


def decode_client(frame: bytes | str, limits: Limits = DEFAULT_LIMITS) -> ClientMessage:
    """Decode and validate one client frame (a WebSocket text frame, as bytes or str).

    Returns a :data:`ClientMessage`; a :class:`SubmitOp`'s op is checked and normalised.
    Raises :class:`ProtocolError` for anything else, and only that; the caller sends
    :func:`error_message` and closes with ``err.close`` when it is set. Fields a client may
    not set (``author``, ``session``, ``user``, ``client`` on an op) and unknown fields
    are dropped.
    """
    data = _as_bytes(frame, limits)
    if data.count(b"[") + data.count(b"{") > limits.max_depth and _too_deep(data, limits.max_depth):
        raise _bad(f"json nested deeper than {limits.max_depth}")
    try:
        msg = _CLIENT_DECODER.decode(data)
    except msgspec.ValidationError as e:
        text = _fact(str(e))
        if "`$.op[" in text:
            # Only a number out of range fails inside an op: the components are Any.
            raise ProtocolError(ErrorCode.INVALID_OP, text, id=_probe_op_id(data, limits)) from None
        raise _bad(text, _probe_op_id(data, limits)) from None
    except msgspec.DecodeError as e:
        detail = str(e).removeprefix("JSON is malformed: ")
        raise _bad(f"malformed json: {_fact(detail)}") from None
    except UnicodeError:
        raise _bad("frame is not valid utf-8") from None
    except (ValueError, RecursionError):
        raise _bad("malformed json") from None
    _check_repeated_fields(data)

    if type(msg) is SubmitOp:
        return _checked_op(msg, limits)
    if type(msg) is Presence:
        return _checked_presence(msg, limits)
    if type(msg) is _HelloFrame:
        return _checked_hello(msg, limits)
    assert type(msg) is Heartbeat
    return msg


def _checked_op(msg: SubmitOp, limits: Limits) -> SubmitOp:
    if len(msg.id) > limits.max_id_chars:
        raise _bad(f"id is longer than {limits.max_id_chars} characters")
    op = msg.op
    if len(op) > limits.max_op_components:
        raise ProtocolError(
            ErrorCode.INVALID_OP,
            f"op has more than {limits.max_op_components} components",
            id=msg.id,
        )
    try:
        ot.check(op)
    except ot.OpError as e:
        raise ProtocolError(ErrorCode.INVALID_OP, str(e), id=msg.id) from None
    # PROTOCOL.md, "Documents, versions, ops": trailing and adjacent skips are accepted
    # and normalised.
    if not _is_normal(op):
        msgspec.structs.force_setattr(msg, "op", ot.normalize(op))
    return msg


def _is_normal(op: ot.Op) -> bool:
    """Whether :func:`ot.normalize` would return ``op`` unchanged; ``op`` passed ot.check.

    Checked ops have no empty components, so only neighbours of one kind (which merge)
    and a trailing skip (which is dropped) change. Most ops are normal already.
    """
    previous: type | None = None
    for c in op:
        kind = type(c)
        if kind is previous:
            return False
        previous = kind
    return previous is not int


def _checked_presence(msg: Presence, limits: Limits) -> Presence:
    if msg.meta is not None and len(_ENCODER.encode(msg.meta)) > limits.max_meta_bytes:
        # PROTOCOL.md, "Presence": a larger meta is bad_message, not too_large.
        raise _bad(f"meta is larger than {limits.max_meta_bytes} bytes")
    return msg


def _checked_hello(msg: _HelloFrame, limits: Limits) -> Hello:
    token = msg.token
    if type(token) is not str or not token or len(token) > limits.max_token_chars:
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "missing or malformed token")
    client = msg.client
    if len(client) > limits.max_client_chars or not _CLIENT_ID.fullmatch(client):
        raise _bad(f"client must match [A-Za-z0-9._-] and be 1 to {limits.max_client_chars} long")
    if client in _RESERVED_CLIENTS:
        raise _bad(f"client {client!r} is reserved")
    return Hello(token=token, client=client, since=msg.since)


def decode_server(frame: bytes | str) -> ServerMessage:
    """Decode one server frame (for clients and tests). Raises only :class:`ProtocolError`.

    No size limit applies: a ``welcome`` carries the whole document.
    """
    try:
        return _SERVER_DECODER.decode(frame)
    except _PARSE_ERRORS as e:
        raise _bad(_fact(str(e))) from None


def encode(msg: ClientMessage | ServerMessage) -> bytes:
    """The frame for ``msg``: compact UTF-8 JSON, ``None`` optional fields left out.

    Encode a broadcast once and send these bytes to every receiver.
    """
    return _ENCODER.encode(msg)


def error_message(err: ProtocolError) -> bytes:
    """The ``error`` frame answering ``err``; never raises."""
    message, id = err.message, err.id
    try:
        return _ENCODER.encode(Error(code=err.code, id=id, message=message))
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; errors quote input, so escape rather than fail.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        if id is not None:
            id = id.encode("utf-8", "backslashreplace").decode("utf-8")
        return _ENCODER.encode(Error(code=err.code, id=id, message=message))
