"""The per-connection state machine (collab_gateway.session), fed frames and ``now`` only."""

from __future__ import annotations

import json

import msgspec
import pytest

from collab_core import protocol
from collab_core.auth import Claims, Role, TokenCodec
from collab_core.errors import CloseCode, ErrorCode
from collab_core.ingress import Submission
from collab_gateway.session import (
    MAX_BAD_MESSAGES,
    Action,
    Authenticated,
    Close,
    Phase,
    Send,
    Session,
    SessionLimits,
    Submit,
    UpdatePresence,
)

SECRET = "k" * 64
T0 = 1_800_000_000.0
DOC = "notes"
CODEC = TokenCodec(SECRET)


def token(
    *,
    sub: str = "u1",
    name: str = "Ada",
    doc: str = DOC,
    role: str = "editor",
    now: float = T0,
    ttl_seconds: int = 3600,
) -> str:
    return CODEC.mint(sub=sub, name=name, doc=doc, role=role, now=now, ttl_seconds=ttl_seconds)


def frame(**fields: object) -> str:
    return json.dumps(fields)


def hello(tok: str | None = None, *, client: str = "c1", since: int | None = None) -> str:
    fields: dict[str, object] = {"type": "hello", "token": tok or token(), "client": client}
    if since is not None:
        fields["since"] = since
    return frame(**fields)


def new_session(limits: SessionLimits | None = None, *, now: float = T0) -> Session:
    return Session(
        doc=DOC,
        session_id="s-server",
        gateway_id="gw-1",
        codec=CODEC,
        now=now,
        limits=limits or SessionLimits(),
    )


def opened(tok: str | None = None, limits: SessionLimits | None = None) -> Session:
    session = new_session(limits)
    actions = session.receive(hello(tok), T0)
    assert [type(a) for a in actions] == [Authenticated]
    return session


def sent(action: Action) -> protocol.ServerMessage:
    assert isinstance(action, Send)
    return protocol.decode_server(action.frame)


def assert_error(action: Action, code: ErrorCode, op_id: str | None = None) -> None:
    message = sent(action)
    assert isinstance(message, protocol.Error)
    assert message.code is code
    assert message.id == op_id
    # The endpoint counts errors by this code without decoding the frame.
    assert isinstance(action, Send)
    assert action.error is code


def assert_fails(actions: list[Action], code: ErrorCode, close: int) -> None:
    """An error frame of ``code``, then a close with ``close``, and nothing else."""
    assert len(actions) == 2
    assert_error(actions[0], code)
    assert actions[1] == Close(close, code.value)


# -- hello ---------------------------------------------------------------------------------


def test_valid_hello_authenticates_with_claims_client_and_since() -> None:
    session = new_session()
    actions = session.receive(hello(client="editor-7", since=42), T0)
    assert actions == [
        Authenticated(
            claims=Claims(sub="u1", name="Ada", doc=DOC, role=Role.EDITOR, exp=int(T0) + 3600),
            client="editor-7",
            since=42,
        )
    ]
    assert session.phase is Phase.OPEN


def test_hello_without_since_authenticates_with_since_none() -> None:
    actions = new_session().receive(hello(), T0)
    assert isinstance(actions[0], Authenticated)
    assert actions[0].since is None


def test_wildcard_token_grants_any_document() -> None:
    actions = new_session().receive(hello(token(doc="*")), T0)
    assert isinstance(actions[0], Authenticated)
    assert actions[0].claims.doc == "*"


@pytest.mark.parametrize(
    "first",
    [
        frame(type="op", id="c1-1", v=0, op=["x"]),
        frame(type="presence", v=0, cursor=None),
        frame(type="heartbeat", timestamp=1.5),
    ],
    ids=["op", "presence", "heartbeat"],
)
def test_a_first_message_other_than_hello_is_unauthorized(first: str) -> None:
    session = new_session()
    assert_fails(session.receive(first, T0), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    assert session.phase is Phase.CLOSED


@pytest.mark.parametrize(
    "first",
    ["not json", frame(type="bogus"), frame(type="op", id="c1-1", v=0, op=[0])],
    ids=["malformed", "unknown-type", "invalid-op"],
)
def test_an_undecodable_first_message_is_unauthorized(first: str) -> None:
    session = new_session()
    assert_fails(session.receive(first, T0), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def test_no_hello_before_the_deadline_is_unauthorized() -> None:
    session = new_session()
    assert session.tick(T0 + 9.999) == []
    assert_fails(session.tick(T0 + 10.0), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    assert session.phase is Phase.CLOSED
    assert session.tick(T0 + 11.0) == []


def test_an_open_session_ends_at_its_tokens_exp_plus_the_codecs_leeway() -> None:
    session = Session(
        doc=DOC,
        session_id="s-server",
        gateway_id="gw-1",
        codec=TokenCodec(SECRET, leeway=20),
        now=T0,
        limits=SessionLimits(),
    )
    assert [type(a) for a in session.receive(hello(token(ttl_seconds=5)), T0)] == [Authenticated]
    assert session.tick(T0 + 24.9) == []
    assert_fails(session.tick(T0 + 25.0), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def test_hello_deadline_follows_the_configured_timeout() -> None:
    session = new_session(SessionLimits(hello_timeout=2.5))
    assert session.tick(T0 + 2.4) == []
    assert_fails(session.tick(T0 + 2.5), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def test_tick_after_a_timely_hello_does_not_close() -> None:
    session = new_session()
    session.receive(hello(), T0 + 9.0)
    assert session.tick(T0 + 30.0) == []


def test_hello_arriving_after_the_deadline_is_unauthorized() -> None:
    session = new_session()
    assert_fails(
        session.receive(hello(token(now=T0 + 11)), T0 + 11.0),
        ErrorCode.UNAUTHORIZED,
        CloseCode.UNAUTHORIZED,
    )


@pytest.mark.parametrize(
    "bad_token",
    [
        "garbage",
        "a.b.c",
        TokenCodec("z" * 64).mint(sub="u1", name="Ada", doc=DOC, role="editor", now=T0),
        token(now=T0 - 7200, ttl_seconds=60),
    ],
    ids=["garbage", "not-jwt", "other-secret", "expired"],
)
def test_bad_or_expired_token_is_unauthorized(bad_token: str) -> None:
    session = new_session()
    assert_fails(
        session.receive(hello(bad_token), T0), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED
    )
    assert session.phase is Phase.CLOSED


def test_token_expiring_exactly_now_is_unauthorized() -> None:
    actions = new_session().receive(hello(token(now=T0, ttl_seconds=0)), T0)
    assert_fails(actions, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "hello", "client": "c1"},
        {"type": "hello", "token": "", "client": "c1"},
        {"type": "hello", "token": 42, "client": "c1"},
    ],
    ids=["missing", "empty", "not-a-string"],
)
def test_missing_token_is_unauthorized(fields: dict[str, object]) -> None:
    actions = new_session().receive(json.dumps(fields), T0)
    assert_fails(actions, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def test_token_for_another_document_is_forbidden_document() -> None:
    session = new_session()
    actions = session.receive(hello(token(doc="other")), T0)
    assert_fails(actions, ErrorCode.FORBIDDEN_DOCUMENT, CloseCode.FORBIDDEN_DOCUMENT)
    assert session.phase is Phase.CLOSED


def test_second_hello_is_bad_message_and_keeps_the_connection() -> None:
    session = opened()
    actions = session.receive(hello(), T0 + 1)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.BAD_MESSAGE)
    assert session.phase is Phase.OPEN
    assert session.bad_messages == 1


def test_nothing_is_accepted_after_the_session_closed() -> None:
    session = opened()
    session.closed()
    assert session.receive(frame(type="heartbeat", timestamp=1), T0) == []
    assert session.tick(T0 + 10_000) == []


# -- ops -------------------------------------------------------------------------------------


def test_editor_op_is_submitted_with_identity_from_token_and_server() -> None:
    session = opened(token(sub="u-ada"))
    op_frame = frame(
        type="op",
        id="c1-17",
        v=57,
        op=[12, "x"],
        author="mallory",
        session="s-forged",
        client="forged-client",
        gateway="gw-forged",
    )
    actions = session.receive(op_frame, T0 + 2.5)
    assert actions == [
        Submit(
            Submission(
                doc=DOC,
                client="c1",
                id="c1-17",
                v=57,
                op=[12, "x"],
                author="u-ada",
                session="s-server",
                gateway="gw-1",
                ts=T0 + 2.5,
            )
        )
    ]


def test_op_is_submitted_normalised() -> None:
    session = opened()
    actions = session.receive(frame(type="op", id="a", v=0, op=[1, 2, "x", 3]), T0)
    assert isinstance(actions[0], Submit)
    assert actions[0].submission.op == [3, "x"]


def test_viewer_op_is_forbidden_with_its_id_and_the_connection_stays_open() -> None:
    session = opened(token(role="viewer"))
    actions = session.receive(frame(type="op", id="c1-3", v=0, op=["x"]), T0)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.FORBIDDEN, "c1-3")
    assert session.phase is Phase.OPEN
    # Viewers may still send presence.
    presence = session.receive(frame(type="presence", v=0, cursor=None), T0)
    assert [type(a) for a in presence] == [UpdatePresence]


def test_invalid_op_answers_with_its_id_and_does_not_count_as_bad_message() -> None:
    session = opened()
    actions = session.receive(frame(type="op", id="c1-4", v=0, op=[{"d": 0}]), T0)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.INVALID_OP, "c1-4")
    assert session.bad_messages == 0


# -- presence and heartbeat ------------------------------------------------------------------


def test_presence_becomes_an_update_with_server_identity() -> None:
    session = opened()
    presence = frame(
        type="presence",
        v=61,
        cursor={"anchor": 12, "head": 14},
        meta={"typing": True},
        session="s-forged",
    )
    actions = session.receive(presence, T0 + 3)
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, UpdatePresence)
    update = action.update
    assert (update.kind, update.doc, update.session, update.gateway, update.ts) == (
        "presence",
        DOC,
        "s-server",
        "gw-1",
        T0 + 3,
    )
    assert msgspec.json.decode(update.state) == {
        "v": 61,
        "cursor": {"anchor": 12, "head": 14},
        "meta": {"typing": True},
    }


def test_presence_clearing_the_cursor_keeps_null() -> None:
    session = opened()
    actions = session.receive(frame(type="presence", v=3, cursor=None), T0)
    assert isinstance(actions[0], UpdatePresence)
    assert msgspec.json.decode(actions[0].update.state) == {"v": 3, "cursor": None, "meta": None}


def test_oversized_meta_is_bad_message() -> None:
    session = opened()
    actions = session.receive(frame(type="presence", v=0, cursor=None, meta={"x": "y" * 2000}), T0)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.BAD_MESSAGE)


def test_heartbeat_is_answered_with_its_timestamp_and_server_time() -> None:
    session = opened()
    actions = session.receive(frame(type="heartbeat", timestamp=1700000000.5), T0 + 4)
    assert len(actions) == 1
    reply = sent(actions[0])
    assert reply == protocol.HeartbeatReply(timestamp=1700000000.5, server_time=T0 + 4)
    assert actions[0] == Send(protocol.encode(reply), error=None)


# -- escalation ------------------------------------------------------------------------------


def test_twentieth_bad_message_closes_4000() -> None:
    session = opened()
    for n in range(1, MAX_BAD_MESSAGES):
        actions = session.receive("not json", T0)
        assert len(actions) == 1, n
        assert_error(actions[0], ErrorCode.BAD_MESSAGE)
    assert session.bad_messages == MAX_BAD_MESSAGES - 1
    actions = session.receive(frame(type="nope"), T0)
    assert len(actions) == 2
    assert_error(actions[0], ErrorCode.BAD_MESSAGE)
    assert actions[1] == Close(CloseCode.BAD_REQUEST, "too many bad messages")
    assert session.phase is Phase.CLOSED
    assert MAX_BAD_MESSAGES == 20


def test_frame_over_max_message_bytes_is_too_large_then_1009() -> None:
    limits = SessionLimits(wire=protocol.Limits(max_message_bytes=1000))
    session = opened(limits=limits)
    actions = session.receive(frame(type="op", id="a", v=0, op=["x" * 1000]), T0)
    assert len(actions) == 2
    assert_error(actions[0], ErrorCode.TOO_LARGE)
    assert actions[1] == Close(CloseCode.MESSAGE_TOO_BIG, "too_large")
    assert session.phase is Phase.CLOSED


def test_frame_of_exactly_max_message_bytes_is_accepted() -> None:
    limits = SessionLimits(wire=protocol.Limits(max_message_bytes=1000))
    session = opened(limits=limits)
    prefix = frame(type="op", id="a", v=0, op=[""])
    op_frame = prefix.replace('""', '"' + "x" * (1000 - len(prefix)) + '"')
    assert len(op_frame.encode()) == 1000
    assert [type(a) for a in session.receive(op_frame, T0)] == [Submit]


def heartbeat(n: int = 0) -> str:
    return frame(type="heartbeat", timestamp=n)


def test_burst_equals_the_rate_then_rate_limited() -> None:
    session = opened(limits=SessionLimits(messages_per_second=5))
    # The hello took one token at T0; at T0 + 1 the bucket is full again.
    now = T0 + 1
    for n in range(5):
        assert [type(a) for a in session.receive(heartbeat(n), now)] == [Send]
    actions = session.receive(heartbeat(5), now)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.RATE_LIMITED)
    assert session.phase is Phase.OPEN


def test_hello_counts_against_the_rate() -> None:
    session = opened(limits=SessionLimits(messages_per_second=5))
    for _ in range(4):
        assert isinstance(sent(session.receive(heartbeat(), T0)[0]), protocol.HeartbeatReply)
    assert_error(session.receive(heartbeat(), T0)[0], ErrorCode.RATE_LIMITED)


def test_bucket_refills_at_the_rate() -> None:
    session = opened(limits=SessionLimits(messages_per_second=5))
    now = T0 + 1
    for _ in range(5):
        session.receive(heartbeat(), now)
    assert_error(session.receive(heartbeat(), now)[0], ErrorCode.RATE_LIMITED)
    # One fifth of a second refills one token, and only one.
    assert isinstance(sent(session.receive(heartbeat(), now + 0.2)[0]), protocol.HeartbeatReply)
    assert_error(session.receive(heartbeat(), now + 0.2)[0], ErrorCode.RATE_LIMITED)
    # A full second refills the whole burst, not more.
    later = now + 10
    for _ in range(5):
        assert isinstance(sent(session.receive(heartbeat(), later)[0]), protocol.HeartbeatReply)
    assert_error(session.receive(heartbeat(), later)[0], ErrorCode.RATE_LIMITED)


def test_rate_limited_op_is_dropped_and_named_so_the_client_can_resend_it() -> None:
    session = opened(limits=SessionLimits(messages_per_second=1))
    now = T0 + 1
    session.receive(heartbeat(), now)
    actions = session.receive(frame(type="op", id="a", v=0, op=["x"]), now)
    assert len(actions) == 1
    assert_error(actions[0], ErrorCode.RATE_LIMITED, "a")


def test_two_times_the_limit_of_consecutive_refusals_closes_4008() -> None:
    session = opened(limits=SessionLimits(messages_per_second=5))
    now = T0 + 1
    for _ in range(5):
        session.receive(heartbeat(), now)
    for n in range(1, 10):
        actions = session.receive(heartbeat(), now)
        assert len(actions) == 1, n
        assert_error(actions[0], ErrorCode.RATE_LIMITED)
    actions = session.receive(heartbeat(), now)
    assert len(actions) == 2
    assert_error(actions[0], ErrorCode.RATE_LIMITED)
    assert actions[1] == Close(CloseCode.RATE_LIMITED, "rate limited")
    assert session.phase is Phase.CLOSED
    assert session.receive(heartbeat(), now + 100) == []


def test_an_accepted_message_resets_the_consecutive_refusals() -> None:
    session = opened(limits=SessionLimits(messages_per_second=5))
    now = T0 + 1
    for _ in range(5):
        session.receive(heartbeat(), now)
    for _ in range(9):
        session.receive(heartbeat(), now)
    assert [type(a) for a in session.receive(heartbeat(), now + 0.2)] == [Send]
    for n in range(9):
        actions = session.receive(heartbeat(), now + 0.2)
        assert len(actions) == 1, n
    assert session.phase is Phase.OPEN


def test_rate_limit_applies_before_hello() -> None:
    session = new_session(SessionLimits(messages_per_second=1))
    session.receive(hello(), T0)
    assert session.phase is Phase.OPEN
    assert_error(session.receive(hello(), T0)[0], ErrorCode.RATE_LIMITED)


# -- token expiry ----------------------------------------------------------------------------


def test_tick_after_token_expiry_is_unauthorized_4001() -> None:
    session = opened(token(ttl_seconds=60))
    assert session.tick(T0 + 59.9) == []
    assert_fails(session.tick(T0 + 60), ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    assert session.phase is Phase.CLOSED
    assert session.receive(frame(type="op", id="a", v=0, op=["x"]), T0 + 61) == []


def test_op_after_token_expiry_is_unauthorized_even_without_a_tick() -> None:
    session = opened(token(ttl_seconds=60))
    actions = session.receive(frame(type="op", id="late", v=0, op=["x"]), T0 + 61)
    assert_fails(actions, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
