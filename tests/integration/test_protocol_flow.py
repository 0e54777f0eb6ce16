"""PROTOCOL.md over a real WebSocket: handshake errors, ordering, idempotent resends, roles."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from collab_client.connection import CollabClient


async def hello(
    stack,
    doc: str,
    *,
    user: str = "u1",
    client: str = "c1",
    role: str = "editor",
    since: int | None = None,
    token: str | None = None,
):
    ws = await websockets.connect(stack.ws_url(doc))
    message = {"type": "hello", "token": token or stack.token(user, role=role), "client": client}
    if since is not None:
        message["since"] = since
    await ws.send(json.dumps(message))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, welcome


async def recv(ws, kinds=("ack", "op", "error")) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] in kinds:
            return message


async def closed_with(ws) -> tuple[int, list[dict]]:
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else 1006), frames


async def test_invalid_document_id_completes_upgrade_then_closes_4000(stack) -> None:
    async with websockets.connect(stack.ws_url("bad%20id!")) as ws:
        code, _ = await closed_with(ws)
    assert code == 4000


@pytest.mark.parametrize(
    ("token_kind", "code", "error"),
    [
        ("garbage", 4001, "unauthorized"),
        ("expired", 4001, "unauthorized"),
        ("other-doc", 4003, "forbidden_document"),
    ],
)
async def test_bad_tokens_get_error_then_close(stack, token_kind, code, error) -> None:
    token = {
        "garbage": "not-a-jwt",
        "expired": stack.token(ttl=-10),
        "other-doc": stack.token(doc="elsewhere"),
    }[token_kind]
    async with websockets.connect(stack.ws_url("guarded")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "client": "c1"}))
        got, frames = await closed_with(ws)
    assert got == code
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == error


async def test_first_message_must_be_hello(stack) -> None:
    async with websockets.connect(stack.ws_url("guarded")) as ws:
        await ws.send(json.dumps({"type": "op", "id": "x", "v": 0, "op": ["hi"]}))
        code, frames = await closed_with(ws)
    assert code == 4001
    assert frames == [
        {"type": "error", "code": "unauthorized", "message": "the first message must be hello"}
    ]
    assert stack.document("guarded")["version"] == 0


async def test_hello_deadline_closes_silent_connections(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_HELLO_TIMEOUT_SECONDS="0.5")
    async with websockets.connect(stack.ws_url("quiet")) as ws:
        code, frames = await closed_with(ws)
    assert code == 4001
    assert frames[0]["code"] == "unauthorized"


async def test_welcome_shape_and_participants(stack) -> None:
    a, wa = await hello(stack, "shape", user="ada", client="ca")
    # A join reaches the roster through presence, asynchronously: wait for it, so that the
    # next welcome must list it.
    url = f"{stack.http()}/v1/documents/shape/participants"
    headers = {"Authorization": f"Bearer {stack.token()}"}
    async with httpx.AsyncClient() as http, asyncio.timeout(10):
        while not (await http.get(url, headers=headers)).json()["participants"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    b, wb = await hello(stack, "shape", user="lin", client="cb")
    assert wa["type"] == "welcome"
    assert wa["doc"] == "shape"
    assert wa["version"] == 0
    assert wa["text"] == ""
    assert wa["role"] == "editor"
    assert wa["user"]["id"] == "ada"
    assert wa["user"]["color"].startswith("#")
    assert wa["heartbeat_ms"] > 0
    assert wa["limits"] == {"max_message_bytes": 262144, "messages_per_second": 100}
    assert [p["session"] for p in wb["participants"]] == [wa["session"]]
    assert wb["participants"][0]["user"]["name"] == "Ada"
    join = await recv(a, ("join",))
    assert join["participant"]["session"] == wb["session"]
    await a.close()
    await b.close()


async def test_acks_and_ops_arrive_in_version_order_without_gaps(stack, edit) -> None:
    doc = "ordered"
    clients = [CollabClient(stack.ws_url(doc), stack.token(f"u{i}")) for i in range(5)]
    for client in clients:
        client.record = True
        client.start()
    rng = random.Random(5)
    try:
        await asyncio.gather(*(c.synced() for c in clients))
        for _ in range(150):
            edit(rng.choice(clients), rng)
            await asyncio.sleep(0.002)
        await asyncio.gather(*(c.synced(timeout=30) for c in clients))
        final = stack.document(doc)
        await asyncio.gather(*(c.reaches(final["version"]) for c in clients))
        for client in clients:
            versions = [m["v"] for m in client.received if m["type"] in ("op", "ack")]
            start = next(m["version"] for m in client.received if m["type"] == "welcome")
            assert versions == list(range(start, final["version"])), client.client_id
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_resend_on_the_same_connection_is_acked_again_and_not_applied_twice(stack) -> None:
    ws, _ = await hello(stack, "idem")
    other, _ = await hello(stack, "idem", user="lin", client="c2")
    op = {"type": "op", "id": "op-1", "v": 0, "op": ["once"]}
    await ws.send(json.dumps(op))
    assert await recv(ws) == {"type": "ack", "id": "op-1", "v": 0}
    await ws.send(json.dumps({"type": "op", "id": "op-2", "v": 1, "op": [4, "!"]}))
    assert await recv(ws) == {"type": "ack", "id": "op-2", "v": 1}
    await ws.send(json.dumps(op))
    assert await recv(ws) == {"type": "ack", "id": "op-1", "v": 0}
    assert stack.document("idem")["text"] == "once!"
    seen = [await recv(other), await recv(other)]
    assert [m["id"] for m in seen] == ["op-1", "op-2"]
    # The resend was not broadcast again.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(other.recv(), 0.5)
    await ws.close()
    await other.close()


async def test_same_id_with_different_content_is_invalid_op(stack) -> None:
    ws, _ = await hello(stack, "reuse")
    await ws.send(json.dumps({"type": "op", "id": "x", "v": 0, "op": ["a"]}))
    assert (await recv(ws))["type"] == "ack"
    await ws.send(json.dumps({"type": "op", "id": "x", "v": 0, "op": ["b"]}))
    error = await recv(ws)
    assert error["type"] == "error"
    assert error["code"] == "invalid_op"
    assert error["id"] == "x"
    assert stack.document("reuse")["text"] == "a"
    await ws.close()


async def test_resend_after_reconnect_with_since_is_recognised(stack) -> None:
    ws, _ = await hello(stack, "resume")
    await ws.send(json.dumps({"type": "op", "id": "r1", "v": 0, "op": ["abc"]}))
    assert (await recv(ws))["v"] == 0
    await ws.send(json.dumps({"type": "op", "id": "r2", "v": 1, "op": [3, "d"]}))
    # Committed, but this client drops before reading the ack.
    for _ in range(300):
        if stack.document("resume")["version"] == 2:
            break
        await asyncio.sleep(0.05)
    ws.transport.abort()
    ws2, welcome2 = await hello(stack, "resume", since=1)
    assert "text" not in welcome2
    assert [(o["id"], o["client"], o["v"]) for o in welcome2["ops"]] == [("r2", "c1", 1)]
    await ws2.send(json.dumps({"type": "op", "id": "r2", "v": 1, "op": [3, "d"]}))
    assert await recv(ws2) == {"type": "ack", "id": "r2", "v": 1}
    assert stack.document("resume") == {"id": "resume", "version": 2, "text": "abcd"}
    await ws2.close()


async def test_since_ahead_of_the_document_is_refused(stack) -> None:
    ws = await websockets.connect(stack.ws_url("ahead"))
    await ws.send(json.dumps({"type": "hello", "token": stack.token(), "client": "c", "since": 9}))
    code, frames = await closed_with(ws)
    assert frames[0]["code"] == "invalid_version"
    assert code == 4000


async def test_viewer_cannot_edit(stack) -> None:
    ws, welcome = await hello(stack, "readonly", role="viewer")
    assert welcome["role"] == "viewer"
    await ws.send(json.dumps({"type": "op", "id": "v1", "v": 0, "op": ["nope"]}))
    error = await recv(ws)
    assert error == {
        "type": "error",
        "code": "forbidden",
        "id": "v1",
        "message": "viewers cannot edit",
    }
    await ws.send(json.dumps({"type": "heartbeat", "timestamp": 1}))
    assert (await recv(ws, ("heartbeat",)))["timestamp"] == 1
    assert stack.document("readonly")["version"] == 0
    await ws.close()


async def test_op_errors_leave_the_connection_open_and_the_document_unchanged(stack) -> None:
    ws, _ = await hello(stack, "errors")
    cases = [
        ({"type": "op", "id": "e1", "v": 0, "op": [5, "x"]}, "invalid_op"),
        ({"type": "op", "id": "e2", "v": 3, "op": ["x"]}, "invalid_version"),
        ({"type": "op", "id": "e3", "v": 0, "op": [{"d": 0}]}, "invalid_op"),
        ({"type": "op", "id": "e4", "v": "0", "op": ["x"]}, "bad_message"),
        ({"type": "nope"}, "bad_message"),
    ]
    for message, code in cases:
        await ws.send(json.dumps(message))
        error = await recv(ws)
        assert error["type"] == "error"
        assert error["code"] == code, message
    await ws.send(json.dumps({"type": "op", "id": "ok", "v": 0, "op": ["fine"]}))
    assert await recv(ws) == {"type": "ack", "id": "ok", "v": 0}
    assert stack.document("errors")["text"] == "fine"
    await ws.close()


async def test_oversized_frame_is_too_large_then_close_1009(stack) -> None:
    ws, _ = await hello(stack, "big")
    await ws.send(json.dumps({"type": "op", "id": "b", "v": 0, "op": ["x" * 300_000]}))
    code, frames = await closed_with(ws)
    assert frames[-1]["code"] == "too_large"
    assert code == 1009
    assert stack.document("big")["version"] == 0


async def test_rate_limit_refuses_then_closes_4008(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_MESSAGES_PER_SECOND="5")
    ws, welcome = await hello(stack, "flood")
    assert welcome["limits"]["messages_per_second"] == 5
    for i in range(40):
        await ws.send(json.dumps({"type": "heartbeat", "timestamp": i}))
    code, frames = await closed_with(ws)
    kinds = [f.get("code", f["type"]) for f in frames]
    assert kinds.count("heartbeat") <= 6
    assert "rate_limited" in kinds
    assert code == 4008
