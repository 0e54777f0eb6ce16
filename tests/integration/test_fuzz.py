"""Fuzzing a live gateway: Hypothesis frames over one WebSocket, schemathesis over the HTTP API.

Bounded on purpose (300 frames, 300 HTTP requests) so that it runs in CI. Whatever is sent,
nothing may produce a server error (an ``internal`` error frame, an HTTP 5xx), a stuck
connection (every frame is followed by a heartbeat whose reply must come back), a frame
the protocol does not define, or a change to the document other than the ops the gateway
acknowledged. A connection the server closes is reopened; only the close codes of
PROTOCOL.md are allowed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from collab_core import ot
from collab_core.errors import ErrorCode, ProtocolError
from collab_core.protocol import Ack, Error, decode_server

#: Placeholder for the document's current version, filled in when the frame is sent.
CURRENT = "\u0000current-version\u0000"
#: Close codes a fuzzed connection may end with (PROTOCOL.md, RFC 6455 1007 and 1009).
ALLOWED_CLOSES = {1007, 1009, 4000}
FUZZ_EXAMPLES = 300


@pytest.fixture(scope="module")
def fuzz_stack(module_stack_factory):
    # No rate limit in the way: every frame must reach the validation under test.
    return module_stack_factory(COLLAB_GATEWAY_MESSAGES_PER_SECOND="100000")


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
texts = st.text(max_size=6) | st.sampled_from(
    ["😀", "👨\u200d👩\u200d👧", "e\u0301", "\r\n", "\x00"]
)
components = (
    st.integers(-2, 12)
    | texts
    | st.fixed_dictionaries({"d": st.integers(-1, 6) | texts})
    | json_values
)
versions = st.just(CURRENT) | st.integers(-2, 8) | st.floats() | st.booleans() | st.text(max_size=3)
op_ids = st.text(min_size=1, max_size=8) | st.text(max_size=70) | st.integers() | st.none()
cursors = (
    st.none()
    | st.fixed_dictionaries({"anchor": st.integers(-1, 2**60), "head": st.integers(-1, 40)})
    | json_values
)

# Ops likely to be accepted: an insert at the start, made at the current version.
accepted_ops = st.fixed_dictionaries(
    {
        "type": st.just("op"),
        "id": st.text(alphabet="abcdef0123456789", min_size=1, max_size=6),
        "v": st.just(CURRENT),
        "op": st.tuples(st.text(min_size=1, max_size=4)).map(list),
    }
)
messages = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("op"), "id": op_ids, "v": versions, "op": st.lists(components, max_size=5)}
    ),
    accepted_ops,
    st.fixed_dictionaries(
        {"type": st.just("presence"), "v": versions, "cursor": cursors},
        optional={"meta": json_values | st.dictionaries(st.text(max_size=4), json_values)},
    ),
    st.fixed_dictionaries({"type": st.just("heartbeat"), "timestamp": json_scalars}),
    st.fixed_dictionaries(
        {"type": st.just("hello"), "token": st.text(max_size=10), "client": st.text(max_size=5)}
    ),
    st.dictionaries(
        st.sampled_from(["type", "id", "v", "op", "cursor", "meta", "since", "author", "doc"]),
        json_values,
        max_size=5,
    ),
)


def as_json(message: dict[str, Any], extra: dict[str, Any]) -> str:
    return json.dumps(message | extra, ensure_ascii=False)


frames = st.one_of(
    st.builds(as_json, accepted_ops, st.just({})),
    st.builds(as_json, messages, st.dictionaries(st.sampled_from(["author", "session"]), texts)),
    # Broken: cut short, mutated bytes, not JSON at all, binary frames, deep nesting.
    st.builds(lambda m, n: json.dumps(m)[:n], messages, st.integers(0, 40)),
    st.builds(
        lambda m, at, junk: (lambda s: s[:at] + junk + s[at:])(json.dumps(m).encode()),
        messages,
        st.integers(0, 60),
        st.binary(min_size=1, max_size=4),
    ),
    st.text(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
)


class FuzzedConnection:
    """One WebSocket to one document, reopened whenever the server closes it."""

    def __init__(self, stack, doc: str) -> None:
        self.stack = stack
        self.doc = doc
        self.ws: ClientConnection | None = None
        self.version = 0
        self.acked: set[tuple[str, int]] = set()
        self.sent_ids: set[str] = set()
        self.closes: list[int] = []
        self.sync = 0
        self._held = contextlib.ExitStack()
        #: The last frames each way, for a failure message.
        self.log: deque[Any] = deque(maxlen=8)

    def open(self) -> ClientConnection:
        if self.ws is None:
            self._held.close()
            ws = self._held.enter_context(
                connect(self.stack.ws_url(self.doc), max_size=None, open_timeout=10)
            )
            ws.send(
                json.dumps({"type": "hello", "token": self.stack.token("fuzz"), "client": "fz"})
            )
            welcome = json.loads(ws.recv(timeout=10))
            assert welcome["type"] == "welcome", welcome
            self.version = welcome["version"]
            self.ws = ws
        return self.ws

    def exchange(self, frame: str | bytes | bytearray) -> None:
        ws = self.open()
        placeholder = json.dumps(CURRENT)
        if isinstance(frame, str) and placeholder in frame:
            frame = frame.replace(placeholder, str(self.version))
        self.sync += 1
        try:
            if isinstance(frame, bytearray):
                ws.send(bytes(frame))  # a binary frame
            elif isinstance(frame, bytes):
                ws.send(frame, text=True)  # a text frame, maybe invalid UTF-8
            else:
                ws.send(frame)
            self._note_sent(frame)
            self.log.append(("sent", frame[:200]))
            ws.send(json.dumps({"type": "heartbeat", "timestamp": self.sync}))
            deadline = time.monotonic() + 10
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"no heartbeat reply: stuck after {frame!r:.200}"
                if self.receive(ws.recv(timeout=left)) == self.sync:
                    return
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            assert code in ALLOWED_CLOSES, f"closed {code} after {frame!r:.200}: {list(self.log)}"
            self.closes.append(code)
            self.ws = None

    def receive(self, raw: str | bytes) -> int | None:
        """Check one server frame; return the heartbeat timestamp it answers, if any."""
        self.log.append(raw)
        try:
            message = decode_server(raw)
        except ProtocolError:
            raise AssertionError(f"not a protocol message: {raw!r:.300}") from None
        if isinstance(message, Error):
            assert message.code is not ErrorCode.INTERNAL, message
        elif isinstance(message, Ack):
            self.acked.add((message.id, message.v))
            self.version = max(self.version, message.v + 1)
        data = json.loads(raw)
        return data.get("timestamp") if data.get("type") == "heartbeat" else None

    def _note_sent(self, frame: str | bytes | bytearray) -> None:
        try:
            data = json.loads(frame)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            self.sent_ids.add(data["id"])

    def close(self) -> None:
        self._held.close()


def test_fuzzed_frames_on_one_connection_never_break_the_gateway(fuzz_stack) -> None:
    stack = fuzz_stack
    bystander = stack.token("bystander")
    with connect(stack.ws_url("bystander")) as ws:
        ws.send(json.dumps({"type": "hello", "token": bystander, "client": "b"}))
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "op", "id": "b1", "v": 0, "op": ["untouched"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ack"
    conn = FuzzedConnection(stack, "fuzzed")

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames)
    def exchange(frame: str | bytes | bytearray) -> None:
        conn.exchange(frame)

    try:
        exchange()
        conn.exchange('{"type":"heartbeat","timestamp":0}')
        time.sleep(0.5)  # late answers from edit-transform
        conn.exchange('{"type":"heartbeat","timestamp":0}')
    finally:
        conn.close()
    document = stack.document("fuzzed")
    history = stack.history("fuzzed")
    text = ""
    for entry in history:
        text = ot.apply(text, entry["op"])
    assert text == document["text"]
    assert document["version"] == len(history)
    # Every commit is an op this connection sent, and every ack names a commit.
    assert {(e["id"], e["v"]) for e in history} >= conn.acked
    assert {e["id"] for e in history} <= conn.sent_ids
    assert all(e["author"] == "fuzz" and e["client"] == "fz" for e in history)
    # Acks can be lost to a close the next fuzzed frame provokes; the history cannot.
    assert history, "no fuzzed op was committed: the fuzzing reached no commit path"
    assert stack.document("bystander")["text"] == "untouched"
    assert httpx.get(f"{stack.http()}/readyz").status_code == 200


def test_schemathesis_against_the_http_api_finds_no_server_error(fuzz_stack) -> None:
    """Positive and negative cases from the gateway's own /openapi.json, with a valid
    editor token; then the gateway still serves and an unrelated document is unchanged."""
    stack = fuzz_stack
    sentinel = "api-sentinel"
    with connect(stack.ws_url(sentinel)) as ws:
        ws.send(json.dumps({"type": "hello", "token": stack.token("owner"), "client": "o"}))
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "op", "id": "s1", "v": 0, "op": ["keep me"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ack"
    schema = schemathesis.openapi.from_url(f"{stack.http()}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "GET /v1/documents/{document_id}",
        "GET /v1/documents/{document_id}/history",
        "GET /v1/documents/{document_id}/versions/{version}",
        "POST /v1/documents/{document_id}/restore",
        "GET /v1/documents/{document_id}/participants",
    }
    cases = st.one_of([op.as_strategy(mode) for op in operations for mode in GenerationMode])
    token = stack.token("fuzz")
    statuses: list[int] = []

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def call(case: Any) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**headers, "Authorization": f"Bearer {token}"}
        response = case.call(timeout=15)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    call()
    assert any(s < 300 for s in statuses)
    assert any(400 <= s < 500 for s in statuses)
    assert stack.document(sentinel)["text"] == "keep me"
    assert httpx.get(f"{stack.http()}/readyz").status_code == 200
