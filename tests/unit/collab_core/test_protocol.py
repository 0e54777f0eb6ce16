"""Tests for collab_core.protocol: hostile client frames, round trips, PROTOCOL.md shapes.

The hostile inputs follow research/reliability.md section 3.2 to 3.4; where that catalogue
and PROTOCOL.md disagree, PROTOCOL.md wins (it is the contract).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab_core.errors import CloseCode, ErrorCode, ProtocolError
from collab_core.protocol import (
    DEFAULT_LIMITS,
    FIELD_NAMES,
    MAX_SAFE_INTEGER,
    Ack,
    ClientMessage,
    ConnectionLimits,
    Cursor,
    Error,
    Heartbeat,
    HeartbeatReply,
    Hello,
    Join,
    Leave,
    Limits,
    OpBroadcast,
    Participant,
    Presence,
    PresenceBroadcast,
    Reconnect,
    ServerMessage,
    SubmitOp,
    User,
    Welcome,
    decode_client,
    decode_server,
    encode,
    error_message,
)

OP = b'{"type":"op","id":"c1-17","v":57,"op":[12,"x"]}'
CLIENT_TYPES = (Hello, SubmitOp, Presence, Heartbeat)


def refused(frame: bytes | str, code: ErrorCode, limits: Limits = DEFAULT_LIMITS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client(frame, limits)
    assert info.value.code is code, info.value
    return info.value


def op_frame(**fields: Any) -> bytes:
    message = {"type": "op", "id": "c1-17", "v": 57, "op": [12, "x"]}
    message.update(fields)
    return json.dumps(message).encode()


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


# Valid messages.


def test_op_example_decodes() -> None:
    assert decode_client(OP) == SubmitOp(id="c1-17", v=57, op=[12, "x"])


def test_text_frame_decodes_like_bytes() -> None:
    assert decode_client(OP.decode()) == decode_client(OP)


def test_hello_example_decodes() -> None:
    frame = '{"type": "hello", "token": "<jwt>", "client": "a1b2-c3", "since": 42}'
    assert decode_client(frame) == Hello(token="<jwt>", client="a1b2-c3", since=42)


def test_hello_without_since() -> None:
    hello = decode_client(b'{"type":"hello","token":"t","client":"c"}')
    assert hello == Hello(token="t", client="c", since=None)


def test_hello_accepts_a_uuid_client() -> None:
    frame = op_frame(type="hello", token="t", client="0b6f8a52-3a6b-4c8e-9d1e-2f4a5b6c7d8e")
    assert isinstance(decode_client(frame), Hello)


def test_presence_example_decodes() -> None:
    frame = (
        b'{"type": "presence", "v": 61, "cursor": {"anchor": 12, "head": 12},'
        b' "meta": {"typing": true}}'
    )
    assert decode_client(frame) == Presence(
        v=61, cursor=Cursor(anchor=12, head=12), meta={"typing": True}
    )


def test_presence_cursor_may_be_null_and_meta_absent_or_null() -> None:
    expected = Presence(v=0, cursor=None, meta=None)
    assert decode_client(b'{"type":"presence","v":0,"cursor":null}') == expected
    assert decode_client(b'{"type":"presence","v":0,"cursor":null,"meta":null}') == expected


@pytest.mark.parametrize("timestamp", [1700000000.5, 1700000000, 0, -1.25])
def test_heartbeat_keeps_the_timestamp_exactly(timestamp: float) -> None:
    msg = decode_client(json.dumps({"type": "heartbeat", "timestamp": timestamp}))
    assert isinstance(msg, Heartbeat)
    assert msg.timestamp == timestamp
    assert type(msg.timestamp) is type(timestamp)


def test_unknown_fields_are_ignored() -> None:
    frame = op_frame(future={"anything": [1, 2, {"x": None}]}, trace="abc")
    assert decode_client(frame) == SubmitOp(id="c1-17", v=57, op=[12, "x"])


def test_whitespace_and_field_order_do_not_matter() -> None:
    frame = b' \n{ "op" : [12, "x"] ,\t"v" : 57, "id" : "c1-17", "type" : "op" }\r\n'
    assert decode_client(frame) == SubmitOp(id="c1-17", v=57, op=[12, "x"])


@pytest.mark.parametrize(
    ("op", "normalised"),
    [
        ([1, 1, "x"], [2, "x"]),
        ([3], []),
        ([2, "x", 3], [2, "x"]),
        (["a", "b"], ["ab"]),
        ([{"d": 1}, {"d": 2}], [{"d": 3}]),
        ([{"d": "ab"}, {"d": "c"}], [{"d": "abc"}]),
        ([5, "hi", {"d": 3}], [5, "hi", {"d": 3}]),
        ([], []),
    ],
)
def test_op_is_normalised(op: list[Any], normalised: list[Any]) -> None:
    msg = decode_client(op_frame(op=op))
    assert isinstance(msg, SubmitOp)
    assert msg.op == normalised


def test_valid_surrogate_pair_is_one_code_point() -> None:
    msg = decode_client(b'{"type":"op","id":"\\ud83d\\ude2d","v":0,"op":["\\ud83d\\ude2d"]}')
    assert msg == SubmitOp(id="😭", v=0, op=["😭"])


@pytest.mark.parametrize(
    "msg",
    [
        Hello(token="jwt", client="c1", since=3),
        Hello(token="jwt", client="c1"),
        SubmitOp(id="c1-17", v=57, op=[12, "x", {"d": 2}, 1, {"d": "ab"}]),
        SubmitOp(id="é", v=0, op=[]),
        Presence(v=61, cursor=Cursor(anchor=12, head=3), meta={"typing": True, "n": [1.5]}),
        Presence(v=0, cursor=None),
        Heartbeat(timestamp=1700000000.5),
        Heartbeat(timestamp=-(2**53) + 1),
    ],
)
def test_valid_client_messages_round_trip(msg: ClientMessage) -> None:
    assert decode_client(encode(msg)) == msg
    assert decode_client(encode(msg).decode()) == msg


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (
            Hello(token="<jwt>", client="c", since=42),
            {"type": "hello", "token": "<jwt>", "client": "c", "since": 42},
        ),
        (Hello(token="<jwt>", client="c"), {"type": "hello", "token": "<jwt>", "client": "c"}),
        (
            SubmitOp(id="c1-17", v=57, op=[12, "x"]),
            {"type": "op", "id": "c1-17", "v": 57, "op": [12, "x"]},
        ),
        (
            Presence(v=61, cursor=Cursor(anchor=12, head=12), meta={"typing": True}),
            {
                "type": "presence",
                "v": 61,
                "cursor": {"anchor": 12, "head": 12},
                "meta": {"typing": True},
            },
        ),
        (
            Presence(v=61, cursor=None),
            {"type": "presence", "v": 61, "cursor": None},
        ),
        (
            Heartbeat(timestamp=1700000000.5),
            {"type": "heartbeat", "timestamp": 1700000000.5},
        ),
    ],
)
def test_client_messages_encode_as_protocol_shows(msg: ClientMessage, wire: object) -> None:
    assert json.loads(encode(msg)) == wire


def test_default_limits() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert msgspec.structs.asdict(DEFAULT_LIMITS) == {
        "max_message_bytes": 262144,
        "max_op_components": 10000,
        "max_depth": 32,
        "max_meta_bytes": 1024,
        "max_id_chars": 64,
        "max_client_chars": 128,
        "max_token_chars": 8192,
    }


# Hostile input: frames and JSON (reliability.md 3.2).


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":',
        b"undefined",
        b'{"type":"heartbeat","timestamp":1} x',
        b'{"type":"heartbeat","timestamp":1}{"type":"heartbeat","timestamp":1}',
        b'{"type":"heartbeat","timestamp":1,}',
        b"{'type': 'heartbeat', 'timestamp': 1}",
        b'{"type":"op","id":"a","v":1,"op":[1,"x"]',
        b"",
        b"   ",
        b'\xef\xbb\xbf{"type":"heartbeat","timestamp":1}',
        b'{"type":"op","id":"a\tb","v":1,"op":[]}',
    ],
)
def test_not_json_is_bad_message(frame: bytes) -> None:
    err = refused(frame, ErrorCode.BAD_MESSAGE)
    assert err.close is None


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"op","id":"\xff","v":1,"op":[]}',
        b'{"type":"op","id":"\xed\xa0\x80","v":1,"op":[]}',
        b'{"type":"op","id":"\xc3","v":1,"op":[]}',
        '{"type":"op","id":"\ud800","v":1,"op":[]}',
    ],
)
def test_invalid_utf8_is_bad_message(frame: bytes | str) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "frame",
    [b"[]", b'"op"', b"null", b"42", b"true", b'[{"type":"heartbeat","timestamp":1}]'],
)
def test_not_an_object_is_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "frame",
    [
        b"{}",
        b'{"timestamp":1}',
        b'{"type":null,"timestamp":1}',
        b'{"type":1,"timestamp":1}',
        b'{"type":["heartbeat"],"timestamp":1}',
        b'{"type":"Op","id":"a","v":1,"op":[]}',
        b'{"type":"delete_doc"}',
        b'{"type":"ack","id":"a","v":1}',
        b'{"type":"welcome"}',
        b'{"type":"","id":"a","v":1,"op":[]}',
    ],
)
def test_type_missing_not_a_string_or_unknown_is_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_unknown_type_error_message_is_bounded() -> None:
    err = refused(b'{"type":"' + b"x" * 100_000 + b'"}', ErrorCode.BAD_MESSAGE)
    assert len(err.message) <= 160


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"op","v":1,"op":[]}',
        b'{"type":"op","id":"a","op":[]}',
        b'{"type":"op","id":"a","v":1}',
        b'{"type":"presence","cursor":null}',
        b'{"type":"presence","v":1}',
        b'{"type":"presence","v":1,"cursor":{"anchor":1}}',
        b'{"type":"heartbeat"}',
        b'{"type":"hello","token":"t"}',
    ],
)
def test_required_field_missing_is_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "fields",
    [
        {"id": 17},
        {"id": ""},
        {"id": None},
        {"id": ["c1-17"]},
        {"v": "57"},
        {"v": 57.0},
        {"v": 57.5},
        {"v": None},
        {"op": {"i": "x"}},
        {"op": "x"},
        {"op": None},
        {"op": 12},
    ],
)
def test_op_field_of_the_wrong_json_type_is_bad_message(fields: dict[str, Any]) -> None:
    refused(op_frame(**fields), ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"presence","v":1,"cursor":"12"}',
        b'{"type":"presence","v":1,"cursor":[12,12]}',
        b'{"type":"presence","v":1,"cursor":{"anchor":-1,"head":0}}',
        b'{"type":"presence","v":1,"cursor":{"anchor":1.5,"head":0}}',
        b'{"type":"presence","v":1,"cursor":{"anchor":1,"head":"2"}}',
        b'{"type":"presence","v":-1,"cursor":null}',
        b'{"type":"presence","v":1,"cursor":null,"meta":[]}',
        b'{"type":"presence","v":1,"cursor":null,"meta":"typing"}',
        b'{"type":"presence","v":1,"cursor":null,"meta":1}',
        b'{"type":"heartbeat","timestamp":"now"}',
        b'{"type":"heartbeat","timestamp":null}',
        b'{"type":"heartbeat","timestamp":[1]}',
        b'{"type":"hello","token":"t","client":7}',
        b'{"type":"hello","token":"t","client":"c","since":"1"}',
        b'{"type":"hello","token":"t","client":"c","since":-1}',
        b'{"type":"hello","token":"t","client":"c","since":1.5}',
    ],
)
def test_other_field_of_the_wrong_json_type_is_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "frame",
    [
        op_frame(v=True),
        op_frame(v=False),
        b'{"type":"hello","token":"t","client":"c","since":true}',
        b'{"type":"presence","v":true,"cursor":null}',
        b'{"type":"presence","v":1,"cursor":{"anchor":true,"head":0}}',
        b'{"type":"presence","v":1,"cursor":{"anchor":0,"head":false}}',
        b'{"type":"heartbeat","timestamp":true}',
    ],
)
def test_true_where_an_integer_is_expected_is_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_true_as_an_op_component_is_invalid_op() -> None:
    err = refused(op_frame(op=[True]), ErrorCode.INVALID_OP)
    assert err.id == "c1-17"


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"op","id":"a","v":NaN,"op":[]}',
        b'{"type":"op","id":"a","v":Infinity,"op":[]}',
        b'{"type":"op","id":"a","v":-Infinity,"op":[]}',
        b'{"type":"op","id":"a","v":1,"op":[NaN]}',
        b'{"type":"heartbeat","timestamp":NaN}',
        b'{"type":"heartbeat","timestamp":Infinity}',
        b'{"type":"heartbeat","timestamp":-Infinity}',
        b'{"type":"heartbeat","timestamp":1e400}',
        b'{"type":"heartbeat","timestamp":-1e400}',
        b'{"type":"heartbeat","timestamp":1e300}',
        b'{"type":"presence","v":1,"cursor":null,"meta":{"x":NaN}}',
    ],
)
def test_nan_and_infinity_are_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "template",
    [
        '{"type":"op","id":"a","v":%s,"op":[]}',
        '{"type":"op","id":"a","v":-%s,"op":[]}',
        '{"type":"hello","token":"t","client":"c","since":%s}',
        '{"type":"heartbeat","timestamp":%s}',
        '{"type":"heartbeat","timestamp":-%s}',
        '{"type":"heartbeat","timestamp":%s.5}',
        '{"type":"presence","v":1,"cursor":{"anchor":%s,"head":0}}',
    ],
)
@pytest.mark.parametrize("digits", [17, 20, 4300, 5000, 200_000])
def test_integers_with_thousands_of_digits_are_bad_message(template: str, digits: int) -> None:
    refused(template % ("9" * digits), ErrorCode.BAD_MESSAGE)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("digits", [4301, 5000, 200_000])
def test_op_component_with_thousands_of_digits_is_invalid_op(digits: int) -> None:
    frame = b'{"type":"op","id":"c1-17","v":1,"op":[' + b"9" * digits + b"]}"
    err = refused(frame, ErrorCode.INVALID_OP)
    assert err.id == "c1-17"


@pytest.mark.timeout(10)
def test_unknown_field_with_thousands_of_digits_is_ignored() -> None:
    frame = b'{"type":"op","id":"c1-17","v":1,"op":[],"x":' + b"9" * 200_000 + b"}"
    assert decode_client(frame) == SubmitOp(id="c1-17", v=1, op=[])


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, 2**63, 2**64, -MAX_SAFE_INTEGER - 1])
def test_integers_beyond_javascript_precision_are_bad_message(value: int) -> None:
    refused(op_frame(v=value), ErrorCode.BAD_MESSAGE)
    refused(json.dumps({"type": "heartbeat", "timestamp": value}), ErrorCode.BAD_MESSAGE)


def test_largest_javascript_safe_integers_are_accepted() -> None:
    assert decode_client(op_frame(v=MAX_SAFE_INTEGER)) == SubmitOp(
        id="c1-17", v=MAX_SAFE_INTEGER, op=[12, "x"]
    )
    for timestamp in (MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER):
        hb = decode_client(json.dumps({"type": "heartbeat", "timestamp": timestamp}))
        assert hb == Heartbeat(timestamp=timestamp)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,
        "[" * 200_000,
        '{"type":"op","id":"a","v":1,"op":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type":"op","id":"a","v":1,"op":[],"x":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type":"op","id":"a","v":1,"op":[],"x":' + nested(40_000) + "}",
        '{"type":"presence","v":1,"cursor":null,"meta":' + nested(40_000) + "}",
        '{"type":"op","id":"a","v":1,"op":[],"x":' + "[1," * 60_000 + "1" + "]" * 60_000 + "}",
        '{"type":"op","id":"a","v":1,"op":[],"x":' + "[[]," * 50_000 + "]" * 50_000 + "}",
    ],
)
def test_nesting_thousands_deep_is_bad_message(frame: str) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_nesting_limit_counts_every_level_of_the_frame() -> None:
    # The message object is level 1 and meta level 2, so meta may nest 30 more levels.
    at_limit = '{"type":"presence","v":1,"cursor":null,"meta":' + nested(30, "{}") + "}"
    msg = decode_client(at_limit)
    assert isinstance(msg, Presence)
    over = '{"type":"presence","v":1,"cursor":null,"meta":' + nested(31, "{}") + "}"
    err = refused(over, ErrorCode.BAD_MESSAGE)
    assert "nested" in err.message


def test_nesting_beyond_the_limit_in_an_unknown_field_is_bad_message() -> None:
    frame = '{"type":"op","id":"a","v":1,"op":[],"x":' + "[" * 40 + "]" * 40 + "}"
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_nested_arrays_in_an_op_within_the_limit_are_invalid_op() -> None:
    err = refused(op_frame(op=[[[1]]]), ErrorCode.INVALID_OP)
    assert err.id == "c1-17"


@pytest.mark.parametrize(
    "text",
    ["[" * 5000, "]" * 5000 + "{" * 5000, '\\"[[[[' * 100, '\\\\"' + "[" * 100, "{[" * 1000],
)
def test_brackets_inside_strings_do_not_count_as_nesting(text: str) -> None:
    msg = decode_client(op_frame(op=[text]))
    assert msg == SubmitOp(id="c1-17", v=57, op=[text])


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"op","id":"\\ud800","v":1,"op":[]}',
        b'{"type":"op","id":"a","v":1,"op":["\\ud83d"]}',
        b'{"type":"op","id":"a","v":1,"op":["x\\udc00"]}',
        b'{"type":"op","id":"a","v":1,"op":[{"d":"\\udc00"}]}',
        b'{"type":"op","id":"a","v":1,"op":["\\udc00\\ud83d"]}',
        b'{"type":"op","id":"a","v":1,"op":["\\ud83dx"]}',
        b'{"type":"op","id":"a","v":1,"op":["\\ud83d\\ud83d"]}',
        b'{"type":"hello","token":"\\ud800","client":"c"}',
        b'{"type":"presence","v":1,"cursor":null,"meta":{"\\ud800":1}}',
        b'{"type":"presence","v":1,"cursor":null,"meta":{"name":"\\udfff"}}',
        b'{"type":"op","id":"a","v":1,"op":[],"x":"\\ud800"}',
    ],
)
def test_lone_surrogates_are_bad_message(frame: bytes) -> None:
    # Even inside an op insert: the parser refuses them before any field is known.
    refused(frame, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("extra", [1, 1000])
def test_frame_over_max_message_bytes_is_too_large_and_closes_1009(extra: int) -> None:
    frame = op_frame(op=["x" * DEFAULT_LIMITS.max_message_bytes])[: 262144 + extra]
    assert len(frame) > 262144
    # Size is checked before parsing: this truncated frame is not valid JSON either.
    err = refused(frame, ErrorCode.TOO_LARGE)
    assert err.close == CloseCode.MESSAGE_TOO_BIG
    assert err.close == 1009
    refused(frame.decode(), ErrorCode.TOO_LARGE)
    for buffer in (bytearray(frame), memoryview(frame)):
        with pytest.raises(ProtocolError) as info:
            decode_client(buffer)  # type: ignore[arg-type]  # buffers are accepted too
        assert info.value.code is ErrorCode.TOO_LARGE


def test_text_frame_size_is_measured_in_utf8_bytes() -> None:
    text = '{"type":"op","id":"a","v":1,"op":["' + "😭" * 70_000 + '"]}'
    assert len(text) < 262144 < len(text.encode())
    err = refused(text, ErrorCode.TOO_LARGE)
    assert err.close == 1009


def test_frame_of_exactly_max_message_bytes_is_accepted() -> None:
    head = b'{"type":"op","id":"c1-17","v":1,"op":["'
    tail = b'"]}'
    frame = head + b"x" * (262144 - len(head) - len(tail)) + tail
    assert len(frame) == 262144
    msg = decode_client(frame)
    assert isinstance(msg, SubmitOp)


def test_frame_size_limit_follows_limits() -> None:
    refused(OP, ErrorCode.TOO_LARGE, Limits(max_message_bytes=len(OP) - 1))
    assert isinstance(decode_client(OP, Limits(max_message_bytes=len(OP))), SubmitOp)


def test_oversized_op_id_is_bad_message() -> None:
    refused(op_frame(id="x" * 65), ErrorCode.BAD_MESSAGE)
    assert decode_client(op_frame(id="x" * 64)) == SubmitOp(id="x" * 64, v=57, op=[12, "x"])


def test_op_id_length_counts_code_points() -> None:
    assert isinstance(decode_client(op_frame(id="😭" * 64)), SubmitOp)
    refused(op_frame(id="😭" * 65), ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("client", ["x" * 129, "", "a b", "a/b", "{slot}", "c:1", "é", "a\n"])
def test_bad_hello_client_is_bad_message(client: str) -> None:
    frame = json.dumps({"type": "hello", "token": "t", "client": client})
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_client_id_server_is_reserved_for_restore_ops() -> None:
    refused(b'{"type":"hello","token":"t","client":"server"}', ErrorCode.BAD_MESSAGE)


def test_hello_client_of_128_characters_is_accepted() -> None:
    frame = json.dumps({"type": "hello", "token": "t", "client": "c" * 128})
    assert isinstance(decode_client(frame), Hello)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"hello","client":"c"}',
        b'{"type":"hello","token":null,"client":"c"}',
        b'{"type":"hello","token":42,"client":"c"}',
        b'{"type":"hello","token":{"jwt":"x"},"client":"c"}',
        b'{"type":"hello","token":"","client":"c"}',
        ('{"type":"hello","token":"' + "t" * 8193 + '","client":"c"}').encode(),
    ],
)
def test_missing_or_malformed_token_is_unauthorized_and_closes_4001(frame: bytes) -> None:
    # PROTOCOL.md, "Connecting": a missing or malformed token is unauthorized.
    err = refused(frame, ErrorCode.UNAUTHORIZED)
    assert err.close == CloseCode.UNAUTHORIZED
    assert err.close == 4001


def test_token_of_max_token_chars_is_accepted() -> None:
    frame = '{"type":"hello","token":"' + "t" * 8192 + '","client":"c"}'
    assert isinstance(decode_client(frame), Hello)


def test_oversized_meta_is_bad_message() -> None:
    # 1024 bytes of compact JSON: {"n":"…"} is 8 bytes plus the string.
    fits = {"n": "é" * 508}
    assert len(msgspec.json.encode(fits)) == 1024
    frame = {"type": "presence", "v": 1, "cursor": None, "meta": fits}
    assert isinstance(decode_client(json.dumps(frame)), Presence)
    frame["meta"] = {"n": "é" * 508 + "x"}
    err = refused(json.dumps(frame), ErrorCode.BAD_MESSAGE)
    assert "meta" in err.message


def test_meta_is_measured_compact_not_as_sent() -> None:
    meta = {"n": "x" * 1000}
    frame = json.dumps({"type": "presence", "v": 1, "cursor": None, "meta": meta}, indent=200)
    assert isinstance(decode_client(frame), Presence)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"op","type":"hello","token":"t","client":"c","id":"a","v":1,"op":[]}',
        b'{"type":"hello","type":"op","token":"t","client":"c","id":"a","v":1,"op":[]}',
        b'{"type":"op","type":"op","id":"a","v":1,"op":[]}',
        b'{"type":"op","id":"a","v":1,"v":99,"op":[]}',
        b'{"type":"op","id":"a","id":"b","v":1,"op":[]}',
        b'{"type":"op","id":"a","v":1,"op":[1,"x"],"op":[]}',
        b'{"type":"op","id":"a","v" :1,"v"\t: 99,"op":[]}',
        b'{"type":"op","id":"a","v":1,"\\u0076":99,"op":[]}',
        b'{"type":"op","id":"a","\\u0076":1,"\\u0076":99,"op":[]}',
        b'{"type":"op","\\u0074\\u0079\\u0070\\u0065":"hello","id":"a","v":1,"op":[]}',
        b'{"type":"op","id":"a","v":1,"op":[],"t\\u0079pe":"op"}',
        b'{"type":"hello","token":"a","token":"b","client":"c"}',
        b'{"type":"presence","v":1,"cursor":{"anchor":1,"head":2,"anchor":3}}',
        b'{"type":"presence","v":1,"cursor":null,"meta":{"v":1,"v":2}}',
        b'{"type":"heartbeat","timestamp":1,"timestamp":2}',
    ],
)
def test_duplicate_keys_are_bad_message(frame: bytes) -> None:
    refused(frame, ErrorCode.BAD_MESSAGE)


def test_the_same_field_name_in_different_objects_is_fine() -> None:
    frame = (
        b'{"type":"presence","v":1,"cursor":{"anchor":1,"head":2},'
        b'"meta":{"v":3,"cursor":{"anchor":9},"type":"x"}}'
    )
    assert decode_client(frame) == Presence(
        v=1,
        cursor=Cursor(anchor=1, head=2),
        meta={"v": 3, "cursor": {"anchor": 9}, "type": "x"},
    )


def test_field_names_as_string_values_are_fine() -> None:
    assert decode_client(op_frame(op=["v", 1, "op", 1, "type"], id="v")) == SubmitOp(
        id="v", v=57, op=["v", 1, "op", 1, "type"]
    )


def test_repeated_delete_key_in_a_component_keeps_the_last() -> None:
    # Not a protocol field: documented as last wins; the server relays what it decoded.
    msg = decode_client(b'{"type":"op","id":"a","v":1,"op":[{"d":1,"d":2}]}')
    assert msg == SubmitOp(id="a", v=1, op=[{"d": 2}])


def test_client_supplied_identity_fields_are_dropped() -> None:
    frame = op_frame(author="u2", session="s-x", client="other", user={"id": "u2"})
    msg = decode_client(frame)
    assert msg == SubmitOp(id="c1-17", v=57, op=[12, "x"])
    assert set(msgspec.structs.asdict(msg)) == {"id", "v", "op"}
    assert json.loads(encode(msg)) == {"type": "op", "id": "c1-17", "v": 57, "op": [12, "x"]}


def test_presence_identity_fields_are_dropped() -> None:
    frame = (
        b'{"type":"presence","v":1,"cursor":null,"session":"s-x",'
        b'"user":{"id":"admin","name":"Root","color":"#000"}}'
    )
    msg = decode_client(frame)
    assert set(msgspec.structs.asdict(msg)) == {"v", "cursor", "meta"}


def test_hello_identity_fields_are_dropped() -> None:
    frame = b'{"type":"hello","token":"t","client":"c","user":"u1","role":"editor","doc":"*"}'
    msg = decode_client(frame)
    assert set(msgspec.structs.asdict(msg)) == {"token", "client", "since"}


# Hostile input: ops (reliability.md 3.3).


@pytest.mark.parametrize(
    "op",
    [
        [0, "x"],
        [-1],
        [1.5],
        [""],
        [{"d": 0}],
        [{"d": ""}],
        [{"d": -3}],
        [{"d": 1.5}],
        [{"x": 1}],
        [{"d": 1, "i": "a"}],
        [{}],
        [None],
        [[1]],
    ],
)
def test_invalid_component_is_invalid_op_with_the_op_id(op: list[Any]) -> None:
    err = refused(op_frame(op=op), ErrorCode.INVALID_OP)
    assert err.id == "c1-17"
    assert err.close is None
    assert err.message.startswith("component 0")


def test_too_many_components_is_invalid_op() -> None:
    assert isinstance(decode_client(op_frame(op=[1, "x"] * 5000)), SubmitOp)
    err = refused(op_frame(op=[1, "x"] * 5000 + [1]), ErrorCode.INVALID_OP)
    assert err.id == "c1-17"
    assert "10000" in err.message


def test_component_limit_follows_limits() -> None:
    refused(op_frame(op=[1, "x", 1]), ErrorCode.INVALID_OP, Limits(max_op_components=2))


def test_negative_version_is_bad_message() -> None:
    refused(op_frame(v=-1), ErrorCode.BAD_MESSAGE)


def test_bad_message_on_an_op_carries_its_id_when_the_id_is_valid() -> None:
    assert refused(op_frame(v="57"), ErrorCode.BAD_MESSAGE).id == "c1-17"
    assert refused(op_frame(op="x"), ErrorCode.BAD_MESSAGE).id == "c1-17"
    assert refused(op_frame(id=17), ErrorCode.BAD_MESSAGE).id is None
    assert refused(op_frame(id="x" * 65, v="1"), ErrorCode.BAD_MESSAGE).id is None
    assert refused(op_frame(id="x" * 65), ErrorCode.BAD_MESSAGE).id is None


def test_id_limit_follows_limits() -> None:
    refused(op_frame(id="abcde"), ErrorCode.BAD_MESSAGE, Limits(max_id_chars=4))


# Hypothesis: decode_client raises nothing but ProtocolError.

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
type_values = st.sampled_from(["hello", "op", "presence", "heartbeat", "ack", "Op", ""])
known_keys = {
    "type": type_values | json_values,
    "id": st.text(max_size=70) | json_values,
    "v": st.integers(min_value=-5, max_value=2**54) | json_values,
    "op": st.lists(
        st.integers(-2, 5) | st.text(max_size=3) | st.fixed_dictionaries({"d": json_scalars}),
        max_size=6,
    )
    | json_values,
    "token": st.text(max_size=10) | json_values,
    "client": st.text(max_size=10) | st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True),
    "since": st.integers(min_value=-2, max_value=100) | json_values,
    "cursor": st.none()
    | st.fixed_dictionaries({}, optional={"anchor": json_scalars, "head": json_scalars})
    | json_values,
    "meta": st.dictionaries(st.text(max_size=5), json_values, max_size=4) | json_values,
    "timestamp": json_scalars,
    "author": json_values,
    "session": json_values,
}
known_dicts = st.fixed_dictionaries({}, optional=known_keys)


def assert_decodes_or_refuses(frame: bytes | str) -> None:
    try:
        msg = decode_client(frame)
    except ProtocolError as e:
        refusal = e
    else:
        assert isinstance(msg, CLIENT_TYPES)
        assert decode_client(encode(msg)) == msg
        return
    assert isinstance(refusal.code, ErrorCode)
    assert json.loads(error_message(refusal))["code"] == refusal.code


FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(frame: bytes) -> None:
    assert_decodes_or_refuses(frame)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text(frame: str) -> None:
    assert_decodes_or_refuses(frame)


@FUZZ
@given(json_values, st.booleans())
def test_fuzz_arbitrary_json_values(value: object, ascii: bool) -> None:
    assert_decodes_or_refuses(json.dumps(value, ensure_ascii=ascii))


@FUZZ
@given(known_dicts, st.booleans())
def test_fuzz_objects_with_the_known_keys(value: dict[str, Any], ascii: bool) -> None:
    assert_decodes_or_refuses(json.dumps(value, ensure_ascii=ascii))


@FUZZ
@given(
    st.sampled_from(
        [
            OP,
            b'{"type":"hello","token":"t","client":"c","since":3}',
            b'{"type":"presence","v":61,"cursor":{"anchor":12,"head":12},"meta":{"t":[1]}}',
            b'{"type":"heartbeat","timestamp":1700000000.5}',
            b'{"type":"op","id":"a","v":1,"op":[1,{"d":"\\u00e9\\\\"},"\\"[x"]}',
        ]
    ),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3), st.binary(max_size=4)), max_size=4),
)
def test_fuzz_mutated_valid_frames(frame: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    for at, cut, insert in edits:
        at %= len(frame) + 1
        frame = frame[:at] + insert + frame[at + cut :]
    assert_decodes_or_refuses(frame)


@FUZZ
@given(known_dicts)
def test_fuzz_tiny_limits(value: dict[str, Any]) -> None:
    limits = Limits(
        max_message_bytes=80,
        max_op_components=2,
        max_depth=2,
        max_meta_bytes=8,
        max_id_chars=2,
        max_client_chars=2,
        max_token_chars=2,
    )
    with contextlib.suppress(ProtocolError):
        decode_client(json.dumps(value), limits)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(0, 3))
def test_fuzz_nesting_depth_is_exact(depth: int, kind: int) -> None:
    opener, closer = [("[", "]"), ('{"a":', "}"), ('["x",', "]"), ('{"\\"[":', "}")][kind]
    meta = '{"a":' + opener * (depth - 1) + "1" + closer * (depth - 1) + "}"
    frame = '{"type":"presence","v":1,"cursor":null,"meta":' + meta + "}"
    limits = Limits(max_meta_bytes=10_000)
    if depth + 1 <= limits.max_depth:
        assert isinstance(decode_client(frame, limits), Presence)
    else:
        refused(frame, ErrorCode.BAD_MESSAGE, limits)


finite_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab[]{}"\\/:,é😭'), max_size=6)
)
finite_values = st.recursive(
    finite_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet=st.sampled_from('k[]{}"\\'), max_size=3), children)
    ),
    max_leaves=12,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b"]), finite_values), st.integers(2, 6))
def test_fuzz_nesting_limit_matches_a_reference(meta: dict[str, Any], max_depth: int) -> None:
    frame = json.dumps({"type": "presence", "v": 1, "cursor": None, "meta": meta})
    limits = Limits(max_depth=max_depth, max_meta_bytes=100_000)
    if 1 + depth(meta) <= max_depth:
        assert decode_client(frame, limits) == Presence(v=1, cursor=None, meta=meta)
    else:
        assert "nested" in refused(frame, ErrorCode.BAD_MESSAGE, limits).message


def key_text(key: str, escapes: list[int]) -> str:
    """``key`` as a JSON string with some letters written as \\u escapes."""
    out = []
    for i, char in enumerate(key):
        style = escapes[i % len(escapes)] if escapes else 0
        out.append(char if style == 0 else f"\\u{ord(char):04{'x' if style == 1 else 'X'}}")
    return '"' + "".join(out) + '"'


objects_with_repeats: st.SearchStrategy[Any] = st.recursive(
    st.integers(0, 9),
    lambda children: st.lists(
        st.tuples(
            st.sampled_from(["v", "id", "meta", "anchor", "d", "x", "vv"]),
            st.lists(st.integers(0, 2), max_size=3),
            children,
        ),
        max_size=4,
    ),
    max_leaves=10,
)


def object_text(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    pairs = (f"{key_text(k, e)} : {object_text(v)}" for k, e, v in value)
    return "{" + ", ".join(pairs) + "}"


def has_repeated_field(text: str) -> bool:
    repeated = False

    def hook(pairs: list[tuple[str, Any]]) -> None:
        nonlocal repeated
        keys = [k for k, _ in pairs]
        repeated |= any(keys.count(k) > 1 for k in keys if k in FIELD_NAMES)

    json.loads(text, object_pairs_hook=hook)
    return repeated


@FUZZ
@given(objects_with_repeats.filter(lambda v: isinstance(v, list)))
def test_fuzz_duplicate_fields_match_a_reference(meta: Any) -> None:
    text = '{"type":"presence","v":1,"cursor":null,"meta":' + object_text(meta) + "}"
    limits = Limits(max_meta_bytes=100_000)
    if has_repeated_field(text):
        assert "duplicate" in refused(text, ErrorCode.BAD_MESSAGE, limits).message
    else:
        assert isinstance(decode_client(text, limits), Presence)


components = (
    st.integers(-1, 5)
    | st.text(max_size=3)
    | st.fixed_dictionaries({"d": st.integers(-1, 3) | st.text(max_size=3)})
)
near_valid_messages = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("hello"),
            "token": st.text(max_size=5),
            "client": st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True),
        },
        optional={"since": st.integers(-1, 100)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("op"),
            "id": st.text(max_size=66),
            "v": st.integers(-1, 100),
            "op": st.lists(components, max_size=6),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("presence"),
            "v": st.integers(-1, 100),
            "cursor": st.none()
            | st.fixed_dictionaries({"anchor": st.integers(-1, 9), "head": st.integers(0, 9)}),
        },
        optional={"meta": st.none() | st.dictionaries(st.text(max_size=4), finite_values)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("heartbeat"),
            "timestamp": st.integers(-9, 9) | st.floats(allow_nan=False, allow_infinity=False),
        }
    ),
)
corruptions = st.dictionaries(st.sampled_from(sorted(known_keys)), json_values, max_size=1)


@FUZZ
@given(near_valid_messages, corruptions, st.booleans())
def test_fuzz_near_valid_messages(
    message: dict[str, Any], corruption: dict[str, Any], ascii: bool
) -> None:
    assert_decodes_or_refuses(json.dumps(message | corruption, ensure_ascii=ascii))


# Server messages encode to what PROTOCOL.md shows.

ADA = User(id="u1", name="Ada", color="#e6194b")
LIN = User(id="u2", name="Lin", color="#3cb44b")
LIMITS = ConnectionLimits(max_message_bytes=262144, messages_per_second=100)
BROADCAST = OpBroadcast(v=61, op=[14, "x"], id="c1-17", client="c-9", author="u1", session="s-7f3a")

SERVER_EXAMPLES: list[tuple[ServerMessage, object]] = [
    (
        Welcome(
            doc="notes",
            session="s-7f3a",
            role="editor",
            user=ADA,
            version=57,
            text="…whole document at version 57…",
            participants=[
                Participant(
                    session="s-19c2",
                    user=LIN,
                    role="viewer",
                    v=55,
                    cursor=Cursor(anchor=3, head=9),
                )
            ],
            heartbeat_ms=20000,
            limits=LIMITS,
        ),
        {
            "type": "welcome",
            "doc": "notes",
            "session": "s-7f3a",
            "role": "editor",
            "user": {"id": "u1", "name": "Ada", "color": "#e6194b"},
            "version": 57,
            "text": "…whole document at version 57…",
            "participants": [
                {
                    "session": "s-19c2",
                    "user": {"id": "u2", "name": "Lin", "color": "#3cb44b"},
                    "role": "viewer",
                    "v": 55,
                    "cursor": {"anchor": 3, "head": 9},
                }
            ],
            "heartbeat_ms": 20000,
            "limits": {"max_message_bytes": 262144, "messages_per_second": 100},
        },
    ),
    (
        Welcome(
            doc="notes",
            session="s-7f3a",
            role="viewer",
            user=ADA,
            version=62,
            ops=[BROADCAST],
            participants=[Participant(session="s-19c2", user=LIN, role="editor", v=3, cursor=None)],
            heartbeat_ms=20000,
            limits=LIMITS,
        ),
        {
            "type": "welcome",
            "doc": "notes",
            "session": "s-7f3a",
            "role": "viewer",
            "user": {"id": "u1", "name": "Ada", "color": "#e6194b"},
            "version": 62,
            "ops": [
                {
                    "type": "op",
                    "v": 61,
                    "op": [14, "x"],
                    "id": "c1-17",
                    "client": "c-9",
                    "author": "u1",
                    "session": "s-7f3a",
                }
            ],
            "participants": [
                {
                    "session": "s-19c2",
                    "user": {"id": "u2", "name": "Lin", "color": "#3cb44b"},
                    "role": "editor",
                    "v": 3,
                    "cursor": None,
                }
            ],
            "heartbeat_ms": 20000,
            "limits": {"max_message_bytes": 262144, "messages_per_second": 100},
        },
    ),
    (Ack(id="c1-17", v=61), {"type": "ack", "id": "c1-17", "v": 61}),
    (
        BROADCAST,
        {
            "type": "op",
            "v": 61,
            "op": [14, "x"],
            "id": "c1-17",
            "client": "c-9",
            "author": "u1",
            "session": "s-7f3a",
        },
    ),
    (
        OpBroadcast(v=7, op=[{"d": 3}, "new"], id="r-1", client="server", author="u1"),
        {
            "type": "op",
            "v": 7,
            "op": [{"d": 3}, "new"],
            "id": "r-1",
            "client": "server",
            "author": "u1",
        },
    ),
    (
        Error(code=ErrorCode.INVALID_OP, id="c1-17", message="op does not fit"),
        {"type": "error", "code": "invalid_op", "id": "c1-17", "message": "op does not fit"},
    ),
    (
        Error(code=ErrorCode.RATE_LIMITED, message="slow down"),
        {"type": "error", "code": "rate_limited", "message": "slow down"},
    ),
    (
        PresenceBroadcast(
            session="s-7f3a",
            user=ADA,
            v=61,
            cursor=Cursor(anchor=12, head=12),
            meta={"typing": True},
        ),
        {
            "type": "presence",
            "session": "s-7f3a",
            "user": {"id": "u1", "name": "Ada", "color": "#e6194b"},
            "v": 61,
            "cursor": {"anchor": 12, "head": 12},
            "meta": {"typing": True},
        },
    ),
    (
        PresenceBroadcast(session="s-7f3a", user=ADA, v=61, cursor=None),
        {
            "type": "presence",
            "session": "s-7f3a",
            "user": {"id": "u1", "name": "Ada", "color": "#e6194b"},
            "v": 61,
            "cursor": None,
        },
    ),
    (
        Join(participant=Participant(session="s-19c2", user=LIN, role="viewer")),
        {
            "type": "join",
            "participant": {
                "session": "s-19c2",
                "user": {"id": "u2", "name": "Lin", "color": "#3cb44b"},
                "role": "viewer",
            },
        },
    ),
    (
        Leave(session="s-7f3a", reason="closed"),
        {"type": "leave", "session": "s-7f3a", "reason": "closed"},
    ),
    (
        Leave(session="s-7f3a", reason="timeout"),
        {"type": "leave", "session": "s-7f3a", "reason": "timeout"},
    ),
    (
        HeartbeatReply(timestamp=1700000000.5, server_time=1700000000.75),
        {"type": "heartbeat", "timestamp": 1700000000.5, "server_time": 1700000000.75},
    ),
    (Reconnect(retry_after_ms=350), {"type": "reconnect", "retry_after_ms": 350}),
]


@pytest.mark.parametrize(("msg", "wire"), SERVER_EXAMPLES)
def test_server_message_encodes_as_protocol_shows(msg: ServerMessage, wire: object) -> None:
    assert json.loads(encode(msg)) == wire


@pytest.mark.parametrize(("msg", "wire"), SERVER_EXAMPLES)
def test_server_message_round_trips(msg: ServerMessage, wire: object) -> None:
    assert decode_server(encode(msg)) == msg
    assert decode_server(json.dumps(wire)) == msg


def test_one_encoding_is_shared_by_every_receiver() -> None:
    assert encode(BROADCAST) == encode(BROADCAST)
    assert isinstance(encode(BROADCAST), bytes)


def test_welcome_carries_exactly_one_of_text_and_ops() -> None:
    fields: dict[str, Any] = {
        "doc": "d",
        "session": "s",
        "role": "editor",
        "user": ADA,
        "version": 0,
        "participants": [],
        "heartbeat_ms": 20000,
        "limits": LIMITS,
    }
    with pytest.raises(ValueError, match="exactly one"):
        Welcome(**fields)
    with pytest.raises(ValueError, match="exactly one"):
        Welcome(**fields, text="", ops=[])
    wire = json.loads(encode(Welcome(**fields, text="")))
    assert wire["text"] == ""
    assert "ops" not in wire
    wire["ops"] = []
    with pytest.raises(ProtocolError) as info:
        decode_server(json.dumps(wire))
    assert info.value.code is ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"[" * 100_000,
        b'{"type":"ack","id":"a"}',
        b'{"type":"hello","token":"t","client":"c"}',
        b'{"type":"error","code":"no_such_code","message":"x"}',
        b'{"type":"op","v":1,"op":[true],"id":"a","client":"c","author":"u"}',
        b"\xff",
        "\ud800",
    ],
)
def test_decode_server_refuses_with_protocol_error(frame: bytes | str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server(frame)
    assert info.value.code is ErrorCode.BAD_MESSAGE


@FUZZ
@given(st.binary(max_size=200) | json_values.map(json.dumps))
def test_fuzz_decode_server(frame: bytes | str) -> None:
    try:
        msg = decode_server(frame)
    except ProtocolError:
        return
    assert decode_server(encode(msg)) == msg


# Error frames.


def test_error_message_answers_a_refused_op() -> None:
    err = refused(op_frame(op=[0]), ErrorCode.INVALID_OP)
    assert json.loads(error_message(err)) == {
        "type": "error",
        "code": "invalid_op",
        "id": "c1-17",
        "message": "component 0: skip must be a positive integer",
    }


def test_error_message_without_id_leaves_it_out() -> None:
    err = refused(b"[]", ErrorCode.BAD_MESSAGE)
    wire = json.loads(error_message(err))
    assert set(wire) == {"type", "code", "message"}
    assert wire["code"] == "bad_message"


def test_error_message_never_raises_on_lone_surrogates() -> None:
    err = ProtocolError(ErrorCode.INVALID_OP, "bad \ud800 text", id="\udc00")
    wire = json.loads(error_message(err))
    assert wire["code"] == "invalid_op"
    assert "bad" in wire["message"]


def test_error_message_decodes_as_an_error() -> None:
    err = ProtocolError(ErrorCode.TOO_LARGE, "message is larger than 262144 bytes", close=1009)
    assert decode_server(error_message(err)) == Error(
        code=ErrorCode.TOO_LARGE, message="message is larger than 262144 bytes"
    )
