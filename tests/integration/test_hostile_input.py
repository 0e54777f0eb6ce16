"""Hostile input, over a real WebSocket and the HTTP API (research/reliability.md section 3).

Every applicable entry of the 56-entry catalogue is a parametrized case here, named after
its row (``r19-truncated-json``). Each case checks the exact error code and close behaviour
of PROTOCOL.md, and then, through the HTTP API, that the document is unchanged. Where the
catalogue and PROTOCOL.md disagree, PROTOCOL.md is the contract (docs/reliability.md lists
those choices); rows covered by other modules are named in docs/reliability.md.

One stack serves the whole module (documents are never shared between cases): Redis,
one gateway with a 1.5 s hello deadline, edit-transform with a 50,000-character document
limit, and presence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

SEED = "seed text"
SYNC = 424242.5
MAX_DOCUMENT_CHARS = 50_000


@pytest.fixture(scope="module")
def hostile(module_stack_factory):
    return module_stack_factory(
        COLLAB_GATEWAY_HELLO_TIMEOUT_SECONDS="1.5",
        COLLAB_TRANSFORM_MAX_DOCUMENT_CHARS=str(MAX_DOCUMENT_CHARS),
    )


def doc_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", label)[:100]


async def connect(stack, doc: str, **options: Any):
    return await websockets.connect(stack.ws_url(doc), max_size=None, **options)


async def say_hello(ws, token: str, client: str = "c-hostile") -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "token": token, "client": client}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
    return welcome


async def seed(ws) -> None:
    await ws.send(json.dumps({"type": "op", "id": "seed", "v": 0, "op": [SEED]}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] == "ack":
            assert message == {"type": "ack", "id": "seed", "v": 0}
            return


async def read_all(ws, *, until_code: str | None = None, sync: bool = True):
    """Frames until the heartbeat reply (and the expected error, which edit-transform may
    send later than the reply), or, with ``sync`` False, until the connection closes.
    Returns (frames, close code or None)."""
    frames: list[dict] = []
    synced = False
    try:
        async with asyncio.timeout(8):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "heartbeat" and message.get("timestamp") == SYNC:
                    synced = True
                else:
                    frames.append(message)
                errors = [f["code"] for f in frames if f["type"] == "error"]
                if sync and synced and (until_code is None or until_code in errors):
                    return frames, None
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else 1006


async def send(ws, payload: str | bytes | list[str], *, binary: bool = False) -> None:
    if isinstance(payload, list):
        await ws.send(payload)  # fragmented: one message in several frames
    elif isinstance(payload, bytes) and not binary:
        await ws.send(payload, text=True)  # bytes as a text frame, invalid UTF-8 included
    else:
        await ws.send(payload)


def unchanged(stack, doc: str, *, seeded: bool = True) -> None:
    expected = {"id": doc, "version": 1, "text": SEED} if seeded else {"version": 0, "text": ""}
    document = stack.document(doc)
    assert {k: document[k] for k in expected} == expected


# -- frames after hello (rows 15-53) -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    payload: str | bytes | list[str]
    code: str | None
    close: int | None = None
    id: str | None = None  # the op id the error must echo; None: not checked
    no_id: bool = False  # the error must carry no id
    binary: bool = False


def op(op: Any, *, v: Any = 1, id: Any = "h1", **extra: Any) -> str:
    return json.dumps({"type": "op", "id": id, "v": v, "op": op, **extra})


def presence(cursor: Any, **extra: Any) -> str:
    return json.dumps({"type": "presence", "v": 1, "cursor": cursor, **extra})


FRAMES = [
    Case("r13-second-hello-bad-token", '{"type":"hello","token":"","client":"c"}', "bad_message"),
    Case("r13-second-hello", '{"type":"hello","token":"x.y.z","client":"c2"}', "bad_message"),
    Case("r15-binary-frame-not-json", b"\x00\x01\x02 not json", "bad_message", binary=True),
    Case("r16-text-frame-invalid-utf8", b'{"type":"op","id":"h1","v":1,"op":["\xff"]}', None, 1007),
    Case("r17-frame-over-256KiB", op(["x" * 300_000]), "too_large", 1009),
    Case(
        "r17-fragmented-over-256KiB",
        ['{"type":"op","id":"h1","v":1,"op":["', "x" * 300_000, '"]}'],
        "too_large",
        1009,
    ),
    Case("r19-truncated-json", '{"type":', "bad_message"),
    Case("r19-undefined", "undefined", "bad_message"),
    Case("r19-trailing-garbage", '{"type":"heartbeat","timestamp":1} x', "bad_message"),
    Case("r20-array", "[]", "bad_message"),
    Case("r20-string", '"op"', "bad_message"),
    Case("r20-null", "null", "bad_message"),
    Case("r20-number", "42", "bad_message"),
    Case("r21-type-wrong-case", op(["x"], type="Op"), "bad_message"),
    Case("r21-type-unknown", '{"type":"delete_doc"}', "bad_message"),
    Case("r21-type-missing", '{"id":"h1","v":1,"op":["x"]}', "bad_message"),
    Case("r22-nested-100000-deep", "[" * 100_000 + "]" * 100_000, "bad_message"),
    Case("r23-nan", '{"type":"op","id":"h1","v":NaN,"op":["x"]}', "bad_message"),
    Case("r23-infinity", '{"type":"op","id":"h1","v":Infinity,"op":["x"]}', "bad_message"),
    Case(
        "r24-5000-digits",
        '{"type":"op","id":"h1","v":' + "1" * 5000 + ',"op":["x"]}',
        "bad_message",
    ),
    Case("r24-2-to-the-63", op(["x"], v=2**63), "bad_message", id="h1"),
    Case("r25-duplicate-key", '{"type":"op","id":"h1","v":1,"v":0,"op":["x"]}', "bad_message"),
    Case("r26-v-true", op(["x"], v=True), "bad_message", id="h1"),
    Case("r26-v-float", op(["x"], v=1.0), "bad_message", id="h1"),
    Case("r28-id-missing", '{"type":"op","v":1,"op":["x"]}', "bad_message", no_id=True),
    Case("r28-id-not-a-string", op(["x"], id=17), "bad_message", no_id=True),
    Case("r28-id-65-chars", op(["x"], id="i" * 65), "bad_message", no_id=True),
    Case("r29-v-ahead-of-head", op(["x"], v=5), "invalid_version", id="h1"),
    Case("r31-op-object", op({"i": "x"}), "bad_message", id="h1"),
    Case("r31-op-string", op("x"), "bad_message", id="h1"),
    Case("r31-op-null", op(None), "bad_message", id="h1"),
    Case("r32-skip-zero", op([0, "x"]), "invalid_op", id="h1"),
    Case("r32-skip-negative", op([-1]), "invalid_op", id="h1"),
    Case("r32-skip-float", op([1.5]), "invalid_op", id="h1"),
    Case("r32-skip-true", op([True]), "invalid_op", id="h1"),
    Case("r33-empty-insert", op([""]), "invalid_op", id="h1"),
    Case("r33-empty-delete", op([{"d": 0}]), "invalid_op", id="h1"),
    Case("r33-empty-delete-text", op([{"d": ""}]), "invalid_op", id="h1"),
    Case("r33-negative-delete", op([{"d": -3}]), "invalid_op", id="h1"),
    Case("r35-unknown-component", op([{"x": 1}]), "invalid_op", id="h1"),
    Case("r35-delete-and-insert", op([{"d": 1, "i": "a"}]), "invalid_op", id="h1"),
    Case("r35-null-component", op([None]), "invalid_op", id="h1"),
    Case("r35-nested-array", op([[1]]), "invalid_op", id="h1"),
    Case("r36-skip-past-the-end", op([len(SEED) + 1, "x"]), "invalid_op", id="h1"),
    Case("r36-delete-past-the-end", op([{"d": len(SEED) + 1}]), "invalid_op", id="h1"),
    Case("r37-invertible-delete-wrong-text", op([{"d": "xyz"}]), "invalid_op", id="h1"),
    Case("r41-lone-surrogate", '{"type":"op","id":"h1","v":1,"op":["\\ud83d"]}', "bad_message"),
    Case(
        "r45-document-over-its-limit",
        op(["x" * (MAX_DOCUMENT_CHARS - len(SEED) + 1)]),
        "too_large",
        id="h1",
    ),
    Case("r46-20001-components", op([1, "a"] * 10_000 + [1]), "invalid_op", id="h1"),
    Case("r49-cursor-negative", presence({"anchor": -1, "head": 0}), "bad_message"),
    Case("r49-cursor-float", presence({"anchor": 1.5, "head": 0}), "bad_message"),
    Case("r49-cursor-anchor-missing", presence({"head": 0}), "bad_message"),
    Case("r49-cursor-huge", presence({"anchor": 2**60, "head": 0}), "bad_message"),
    Case("r50-meta-over-1KiB", presence(None, meta={"x": "y" * 2000}), "bad_message"),
    Case("r50-meta-not-an-object", presence(None, meta="typing"), "bad_message"),
    Case("r53-heartbeat-timestamp-string", '{"type":"heartbeat","timestamp":"now"}', "bad_message"),
]


@pytest.mark.parametrize("case", FRAMES, ids=[c.label for c in FRAMES])
async def test_hostile_frame_gets_its_error_and_changes_nothing(hostile, case: Case) -> None:
    doc = doc_name(case.label)
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await seed(ws)
        await send(ws, case.payload, binary=case.binary)
        await ws.send(json.dumps({"type": "heartbeat", "timestamp": SYNC}))
        frames, close = await read_all(ws, until_code=case.code, sync=case.close is None)
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["code"] for e in errors] == ([case.code] if case.code else []), frames
    assert [f for f in frames if f["type"] in ("ack", "op")] == []
    assert close == case.close
    if errors and case.id is not None:
        assert errors[0]["id"] == case.id
    if errors and case.no_id:
        assert "id" not in errors[0]
    unchanged(hostile, doc)


async def test_a_fragmented_message_far_over_the_limit_is_closed_1009(hostile) -> None:
    """Row 17: the WebSocket layer itself stops a message beyond 4 x max_message_bytes."""
    doc = "r17-fragmented-2MB"
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await seed(ws)
        await ws.send(['{"type":"op","id":"h1","v":1,"op":["', *["x" * 500_000] * 4, '"]}'])
        frames, close = await read_all(ws, sync=False)
    assert close == 1009
    assert {f.get("code") for f in frames if f["type"] == "error"} <= {"too_large"}
    unchanged(hostile, doc)


async def test_twenty_bad_messages_close_4000(hostile) -> None:
    """PROTOCOL.md, errors table: bad_message "closes 4000 after 20 on one connection"."""
    doc = "bad-message-escalation"
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await seed(ws)
        for _ in range(20):
            await ws.send("[]")
        frames, close = await read_all(ws, sync=False)
    assert [f["code"] for f in frames] == ["bad_message"] * 20
    assert close == 4000
    unchanged(hostile, doc)


# -- the handshake and hello (rows 1-14) ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["x" * 129, "%7Ba%7D", "", "a/b", "..%2F..%2Fetc%2Fpasswd", "bad%20id!"],
    ids=["r1-129-chars", "r1-braces", "r1-empty", "r1-slash", "r1-traversal", "r1-space"],
)
async def test_invalid_document_id_completes_the_upgrade_then_closes_4000(hostile, path) -> None:
    url = f"ws://127.0.0.1:{hostile.gateway.port}/v1/collaborate/{path}"
    async with websockets.connect(url) as ws:
        frames, close = await read_all(ws, sync=False)
    assert (frames, close) == ([], 4000)


async def test_dot_dot_is_a_document_id_like_any_other(hostile) -> None:
    """Row 1: ``%2e%2e`` decodes to ``..``, which PROTOCOL.md's id pattern allows: it names a
    document and nothing else (ids only ever become Redis key parts, never paths)."""
    async with await connect(hostile, "%2e%2e") as ws:
        welcome = await say_hello(ws, hostile.token("mallory"))
    assert welcome["doc"] == ".."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


def bad_token(stack, kind: str) -> str:
    """Tokens refused with ``unauthorized`` (rows 5-8, 10) or ``forbidden_document`` (9)."""
    secret = stack.env()["COLLAB_JWT_SECRET"]
    now = int(time.time())
    good = {"sub": "mallory", "name": "Mallory", "doc": "*", "role": "editor", "exp": now + 600}

    def signed(claims: dict[str, Any], key: str = secret, algorithm: str = "HS256") -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT warns about short HS512 keys
            return jwt.encode(claims, key, algorithm=algorithm)

    without = {k: v for k, v in good.items() if k != kind.removeprefix("missing-")}
    return {
        "r5-alg-none": _unsigned({"alg": "none", "typ": "JWT"}, good),
        "r6-alg-rs256": _unsigned({"alg": "RS256", "typ": "JWT"}, good, b"\x01" * 256),
        "r6-alg-hs512-same-secret": signed(good, algorithm="HS512"),
        "r7-wrong-key": signed(good, key="another-secret-" + "y" * 40),
        "r7-truncated-signature": signed(good)[:-8],
        "r7-four-parts": signed(good) + ".e30",
        "r7-garbage": "not-a-jwt",
        "r8-expired": signed({**good, "exp": now - 60}),
        "missing-exp": signed(without),
        "r8-exp-a-string": signed({**good, "exp": str(now + 600)}),
        "r10-role-admin": signed({**good, "role": "admin"}),
        "r10-role-true": signed({**good, "role": True}),
        "r10-doc-a-list": signed({**good, "doc": ["*"]}),
        "r10-doc-not-an-id": signed({**good, "doc": "a/b"}),
        "missing-sub": signed(without),
        "missing-role": signed(without),
        "missing-doc": signed(without),
        "missing-name": signed(without),
        "r10-sub-an-integer": signed({**good, "sub": 7}),
        "r9-other-document": signed({**good, "doc": "somewhere-else"}),
    }[kind]


TOKENS = [
    "r5-alg-none",
    "r6-alg-rs256",
    "r6-alg-hs512-same-secret",
    "r7-wrong-key",
    "r7-truncated-signature",
    "r7-four-parts",
    "r7-garbage",
    "r8-expired",
    "missing-exp",
    "r8-exp-a-string",
    "r10-role-admin",
    "r10-role-true",
    "r10-doc-a-list",
    "r10-doc-not-an-id",
    "missing-sub",
    "missing-role",
    "missing-doc",
    "missing-name",
    "r10-sub-an-integer",
    "r9-other-document",
]


def refusal(kind: str) -> tuple[str, int, int]:
    """(error code, close code, HTTP status) for a bad token."""
    if kind.startswith("r9-"):
        return "forbidden_document", 4003, 403
    return "unauthorized", 4001, 401


@pytest.mark.parametrize("kind", TOKENS)
async def test_bad_token_in_hello_is_refused(hostile, kind) -> None:
    doc = doc_name(f"token-{kind}")
    async with await connect(hostile, doc) as ws:
        await ws.send(
            json.dumps({"type": "hello", "token": bad_token(hostile, kind), "client": "c"})
        )
        frames, close = await read_all(ws, sync=False)
    code, close_code, _ = refusal(kind)
    assert [f["code"] for f in frames] == [code]
    assert close == close_code
    unchanged(hostile, doc, seeded=False)


@pytest.mark.parametrize("kind", TOKENS)
def test_bad_token_on_the_http_api_is_refused(hostile, kind) -> None:
    code, _, status = refusal(kind)
    token = bad_token(hostile, kind)
    base = f"{hostile.http()}/v1/documents/http-{kind}"
    for method, path, body in [
        ("GET", "", None),
        ("GET", "/history", None),
        ("GET", "/versions/0", None),
        ("GET", "/participants", None),
        ("POST", "/restore", {"version": 0}),
    ]:
        response = httpx.request(
            method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert (response.status_code, response.json()["error"]) == (status, code), path
    unchanged(hostile, f"http-{kind}", seeded=False)


PRE_HELLO = [
    ("r4-op-first", op(["x"], v=0)),
    ("r4-presence-first", presence(None)),
    ("r3-heartbeat-first", '{"type":"heartbeat","timestamp":1}'),
    ("r3-junk-first", "junk"),
    ("r11-client-missing", '{"type":"hello","token":"%s"}'),
    ("r11-client-not-a-string", '{"type":"hello","token":"%s","client":7}'),
    ("r11-client-10KB", '{"type":"hello","token":"%s","client":"' + "c" * 10_000 + '"}'),
    ("r11-client-not-an-id", '{"type":"hello","token":"%s","client":"a b"}'),
    ("r11-client-reserved", '{"type":"hello","token":"%s","client":"server"}'),
    ("r12-since-negative", '{"type":"hello","token":"%s","client":"c","since":-1}'),
    ("r12-since-float", '{"type":"hello","token":"%s","client":"c","since":1.5}'),
    ("r12-since-true", '{"type":"hello","token":"%s","client":"c","since":true}'),
    ("token-missing", '{"type":"hello","client":"c"}'),
    ("token-not-a-string", '{"type":"hello","token":7,"client":"c"}'),
]


@pytest.mark.parametrize(("label", "frame"), PRE_HELLO, ids=[label for label, _ in PRE_HELLO])
async def test_anything_but_a_valid_hello_first_is_unauthorized(hostile, label, frame) -> None:
    """Rows 3, 4, 11, 12: before hello, a malformed or other message is ``unauthorized``
    and closes 4001 at once (PROTOCOL.md, "Connecting")."""
    doc = doc_name(label)
    frame = frame.replace("%s", hostile.token("mallory")) if "%s" in frame else frame
    async with await connect(hostile, doc) as ws:
        await ws.send(frame)
        frames, close = await read_all(ws, sync=False)
    assert [f["code"] for f in frames] == ["unauthorized"]
    assert close == 4001
    unchanged(hostile, doc, seeded=False)


async def test_since_ahead_of_the_document_is_invalid_version_then_4000(hostile) -> None:
    async with await connect(hostile, "r12-since-ahead") as ws:
        await ws.send(
            json.dumps({"type": "hello", "token": hostile.token(), "client": "c", "since": 99})
        )
        frames, close = await read_all(ws, sync=False)
    assert [f["code"] for f in frames] == ["invalid_version"]
    assert close == 4000


async def test_silence_closes_4001_at_the_hello_deadline_and_pings_do_not_extend_it(hostile):
    """Row 3: the deadline is absolute; WebSocket pings from the client do not move it."""
    started = time.monotonic()
    async with await connect(hostile, "r3-silence", ping_interval=0.2) as ws:
        frames, close = await read_all(ws, sync=False)
    assert [f["code"] for f in frames] == ["unauthorized"]
    assert close == 4001
    assert 1.4 < time.monotonic() - started < 5


# -- ops the protocol accepts, and what they become ----------------------------------------


async def roundtrip(stack, doc: str, ops: list[list[Any]], text: str = SEED) -> list[dict]:
    """Seed ``text`` in ``doc``, send ``ops`` one after another, return the answers."""
    answers = []
    async with await connect(stack, doc) as ws:
        await say_hello(ws, stack.token("mallory"))
        await ws.send(json.dumps({"type": "op", "id": "seed", "v": 0, "op": [text]}))
        assert json.loads(await ws.recv())["type"] == "ack"
        for n, operation in enumerate(ops):
            await ws.send(json.dumps({"type": "op", "id": f"o{n}", "v": 1 + n, "op": operation}))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    return answers


async def test_adjacent_and_trailing_skips_are_normalised(hostile) -> None:
    """Row 34: PROTOCOL.md accepts both and normalises them; a trailing skip alone is an
    empty op, which is committed (a version with no change) and acknowledged."""
    answers = await roundtrip(hostile, "r34-skips", [[1, 1, "x"], [3]])
    assert [a["type"] for a in answers] == ["ack", "ack"]
    history = hostile.history("r34-skips")
    assert [e["op"] for e in history[1:]] == [[2, "x"], []]
    assert hostile.document("r34-skips")["text"] == "sexed text"


async def test_positions_count_code_points_not_utf16_units(hostile) -> None:
    """Row 42: after "😭" is position 1, not 2; an offset in UTF-16 units lands one later."""
    await roundtrip(hostile, "r42-code-points", [[1, "x"], [4, "y"]], text="😭ab")
    assert hostile.document("r42-code-points")["text"] == "😭xaby"


async def test_a_zwj_sequence_split_by_a_skip_is_accepted(hostile) -> None:
    """Row 43: positions inside 👨‍👩‍👧 (5 code points) are valid positions."""
    family = "👨\u200d👩\u200d👧"
    answers = await roundtrip(hostile, "r43-zwj", [[2, "x"]], text=family)
    assert answers[0]["type"] == "ack"
    assert hostile.document("r43-zwj")["text"] == family[:2] + "x" + family[2:]


async def test_controls_bidi_and_bom_are_stored_and_returned_verbatim(hostile) -> None:
    """Row 44: the document is a Unicode string: NUL, C0 controls, U+202E and U+FEFF are text."""
    text = "a\x00b\x01\x1f\u202eevil\ufeff\u200b\r\n\t<script>alert(1)</script>"
    await roundtrip(hostile, "r44-verbatim", [], text=text)
    assert hostile.document("r44-verbatim")["text"] == text
    history = hostile.history("r44-verbatim")
    assert history[0]["op"] == [text]


async def test_binary_frames_are_read_as_utf8_json_like_text_frames(hostile) -> None:
    """Row 15, decided: a binary frame is validated exactly like a text frame (UTF-8 JSON,
    same limits); garbage is ``bad_message`` and counts toward the 20 that close 4000."""
    doc = "r15-binary-op"
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await ws.send(json.dumps({"type": "op", "id": "b1", "v": 0, "op": ["bin"]}).encode())
        assert json.loads(await ws.recv()) == {"type": "ack", "id": "b1", "v": 0}


async def test_compression_is_never_negotiated(hostile) -> None:
    """Row 18: permessage-deflate is off, so no compression bomb can get past the size cap."""
    async with await connect(hostile, "r18-deflate", compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


# -- flow: floods and presence (rows 48-52) ------------------------------------------------


async def test_op_flood_is_rate_limited_and_every_op_acked_or_refused(hostile) -> None:
    """Row 48: beyond the burst, ops are refused with ``rate_limited`` naming their id and
    are not committed; every other op is committed once."""
    doc = "r48-flood"
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await seed(ws)
        for n in range(300):
            await ws.send(json.dumps({"type": "op", "id": f"f{n}", "v": 1, "op": ["z"]}))
        answers: dict[str, str] = {}
        async with asyncio.timeout(20):
            while len(answers) < 300:
                message = json.loads(await ws.recv())
                if message["type"] in ("ack", "error"):
                    assert message["id"] not in answers
                    answers[message["id"]] = message.get("code", "ack")
    refused = [i for i, a in answers.items() if a == "rate_limited"]
    acked = [i for i, a in answers.items() if a == "ack"]
    assert refused
    assert len(acked) + len(refused) == 300
    history = hostile.history(doc)
    assert sorted(e["id"] for e in history[1:]) == sorted(acked)


async def presence_room(stack, doc: str):
    # The sender never reads its errors: an unbounded queue lets its close handshake through.
    sender = await connect(stack, doc, max_queue=None)
    await say_hello(sender, stack.token("mallory"), client="sender")
    watcher = await connect(stack, doc, max_queue=None)
    await say_hello(watcher, stack.token("watcher"), client="watcher")
    return sender, watcher


async def presence_seen(watcher, seconds: float = 1.0, *, until=None) -> list[dict]:
    """The presence frames ``watcher`` receives within ``seconds``; with ``until``, those
    received until ``until(frame)`` holds for one (within 15 s) and 0.3 s more."""
    seen: list[dict] = []
    deadline = time.monotonic() + (15.0 if until else seconds)
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(await asyncio.wait_for(watcher.recv(), left))
        except TimeoutError:
            break
        if message["type"] == "presence":
            seen.append(message)
            if until is not None and until(message):
                until, deadline = None, time.monotonic() + 0.3
    return seen


async def test_refused_presence_is_not_broadcast(hostile) -> None:
    """Rows 49-50: a bad cursor or meta gets ``bad_message`` and reaches nobody."""
    sender, watcher = await presence_room(hostile, "r49-not-broadcast")
    async with sender, watcher:
        for frame in [
            presence({"anchor": -1, "head": 0}),
            presence(None, meta={"x": "y" * 2000}),
            presence(None, meta="typing"),
        ]:
            await sender.send(frame)
            while (reply := json.loads(await asyncio.wait_for(sender.recv(), 5)))[
                "type"
            ] != "error":
                pass
            assert reply["code"] == "bad_message"
        assert await presence_seen(watcher) == []


async def test_markup_in_meta_and_names_is_relayed_as_data(hostile) -> None:
    """Row 51: presence ``meta`` and display names are relayed byte for byte; rendering
    them as text is the client's part (clients/demo/test/e2e.test.mjs)."""
    markup = "<img src=x onerror=alert(1)>"
    token = hostile.codec.mint(
        sub="m", name=markup, doc="*", role="editor", now=time.time(), ttl_seconds=600
    )
    sender = await connect(hostile, "r51-markup")
    await say_hello(sender, token, client="sender")
    watcher = await connect(hostile, "r51-markup")
    await say_hello(watcher, hostile.token("watcher"), client="watcher")
    async with sender, watcher:
        await sender.send(presence({"anchor": 0, "head": 0}, v=0, meta={"note": markup}))
        [seen] = await presence_seen(watcher, until=lambda frame: True)
    assert seen["meta"] == {"note": markup}
    assert seen["user"]["name"] == markup


async def test_presence_flood_is_coalesced_never_amplified(hostile) -> None:
    """Row 52: a burst of 150 presence updates reaches another session at most once each,
    usually far fewer (coalesced; the excess is rate limited), and the latest one wins."""
    sender, watcher = await presence_room(hostile, "r52-presence-flood")
    async with sender, watcher:
        for n in range(150):
            await sender.send(presence(None, v=0, meta={"n": n}))
        await asyncio.sleep(1.1)  # the token bucket refills
        await sender.send(presence(None, v=0, meta={"n": "last"}))
        seen = await presence_seen(watcher, until=lambda frame: frame["meta"] == {"n": "last"})
    assert 1 <= len(seen) < 150
    assert seen[-1]["meta"] == {"n": "last"}


# -- the HTTP API (row 56, and rows 1 and 14 over HTTP) ------------------------------------

HTTP_CASES = [
    ("r56-limit-huge", "GET", "/history?limit=1000000000", None, 422, None),
    ("r56-limit-zero", "GET", "/history?limit=0", None, 422, None),
    ("r56-from-negative", "GET", "/history?from=-1", None, 422, None),
    ("r56-from-not-a-number", "GET", "/history?from=abc", None, 422, None),
    ("r56-version-not-a-number", "GET", "/versions/abc", None, 422, None),
    ("r56-version-negative", "GET", "/versions/-1", None, 422, None),
    ("r56-version-ahead", "GET", "/versions/99", None, 404, "invalid_version"),
    ("r56-restore-ahead", "POST", "/restore", {"version": 99}, 404, "invalid_version"),
    ("r56-restore-negative", "POST", "/restore", {"version": -1}, 422, None),
    ("r56-restore-huge", "POST", "/restore", {"version": 2**60}, 422, None),
    ("r56-restore-no-version", "POST", "/restore", {}, 422, None),
    ("r56-restore-not-json", "POST", "/restore", "{not json", 422, None),
]


@pytest.mark.parametrize(
    ("label", "method", "path", "body", "status", "code"),
    HTTP_CASES,
    ids=[c[0] for c in HTTP_CASES],
)
async def test_hostile_http_request_is_refused_and_changes_nothing(
    hostile, label, method, path, body, status, code
) -> None:
    doc = doc_name(f"http-{label}")
    async with await connect(hostile, doc) as ws:
        await say_hello(ws, hostile.token("mallory"))
        await seed(ws)
    headers = {"Authorization": f"Bearer {hostile.token('mallory')}"}
    url = f"{hostile.http()}/v1/documents/{doc}{path}"
    if isinstance(body, str):
        headers["Content-Type"] = "application/json"
        response = httpx.request(method, url, content=body, headers=headers)
    else:
        response = httpx.request(method, url, json=body, headers=headers)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"] == code
    unchanged(hostile, doc)


def test_viewer_restore_is_forbidden_and_changes_nothing(hostile) -> None:
    """Row 56: a viewer may read but not restore."""
    headers = {"Authorization": f"Bearer {hostile.token('vic', role='viewer')}"}
    base = f"{hostile.http()}/v1/documents/r56-viewer"
    assert httpx.get(base, headers=headers).status_code == 200
    response = httpx.post(f"{base}/restore", json={"version": 0}, headers=headers)
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")
    unchanged(hostile, "r56-viewer", seeded=False)


@pytest.mark.parametrize("path", ["x" * 129, "%7Ba%7D", "bad%20id!"])
def test_http_invalid_document_id_is_bad_message(hostile, path) -> None:
    headers = {"Authorization": f"Bearer {hostile.token()}"}
    response = httpx.get(f"{hostile.http()}/v1/documents/{path}", headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "bad_message")
