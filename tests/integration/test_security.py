"""The security checklist (research/reliability.md section 4), one test or more per item.

Items tested elsewhere are named in docs/reliability.md: HS256-only tokens with every claim
checked by value (``test_hostile_input.py``, ``test_bad_token_*``), the slow consumer cut
off (``test_limits.py``), and the demo page rendering document text as text
(``clients/demo/test/e2e.test.mjs``). Redis is not exposed outside the cluster by the
chart's NetworkPolicy.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab_client.connection import CollabClient


async def hello(stack, doc: str, token: str, client: str = "c1", **options):
    ws = await websockets.connect(stack.ws_url(doc), **options)
    await ws.send(json.dumps({"type": "hello", "token": token, "client": client}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def until_closed(ws) -> tuple[list[dict], int]:
    frames = []
    try:
        async with asyncio.timeout(10):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else 1006


async def answer(ws, kinds=("ack", "error")) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] in kinds:
            return message


# -- 1. The token travels only in hello ----------------------------------------------------


async def test_a_token_in_the_websocket_url_is_ignored(stack) -> None:
    token = stack.token("ada")
    url = f"{stack.ws_url('query-token')}?token={token}&access_token={token}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "client": "c1"}))
        frames, close = await until_closed(ws)
    assert [f["code"] for f in frames] == ["unauthorized"]
    assert close == 4001


@pytest.mark.parametrize(
    "where",
    ["query-token", "query-access_token", "cookie", "basic", "bearer-without-space", "no-scheme"],
)
def test_the_http_api_takes_the_token_only_as_a_bearer_header(stack, where) -> None:
    token = stack.token("ada")
    url = f"{stack.http()}/v1/documents/query-token"
    params, headers, cookies = {}, {}, {}
    if where == "query-token":
        params["token"] = token
    elif where == "query-access_token":
        params["access_token"] = token
    elif where == "cookie":
        cookies["token"] = token
    elif where == "basic":
        headers["Authorization"] = f"Basic {token}"
    elif where == "bearer-without-space":
        headers["Authorization"] = f"bearer{token}"
    else:
        headers["Authorization"] = token
    client = httpx.Client(cookies=cookies)
    try:
        response = client.get(url, params=params, headers=headers)
    finally:
        client.close()
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- 2. Authorization on every message and every route -------------------------------------


async def test_a_viewer_is_refused_on_every_op_not_only_the_first(stack) -> None:
    ws, welcome = await hello(stack, "viewer-every", stack.token("vic", role="viewer"))
    async with ws:
        assert welcome["role"] == "viewer"
        for n in range(5):
            await ws.send(json.dumps({"type": "op", "id": f"v{n}", "v": 0, "op": [f"{n}"]}))
            assert await answer(ws) == {
                "type": "error",
                "code": "forbidden",
                "id": f"v{n}",
                "message": "viewers cannot edit",
            }
            # Other messages stay allowed in between (presence, heartbeats).
            await ws.send(json.dumps({"type": "presence", "v": 0, "cursor": None}))
            await ws.send(json.dumps({"type": "heartbeat", "timestamp": n}))
            assert (await answer(ws, ("heartbeat",)))["timestamp"] == n
    assert stack.document("viewer-every")["version"] == 0


async def test_a_token_for_one_document_opens_no_other(stack) -> None:
    token = stack.token("ada", doc="mine")
    ws, _ = await hello(stack, "mine", token)
    await ws.close()
    async with websockets.connect(stack.ws_url("theirs")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "client": "c1"}))
        frames, close = await until_closed(ws)
    assert ([f["code"] for f in frames], close) == (["forbidden_document"], 4003)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{stack.http()}/v1/documents/theirs"
    for method, path, body in [
        ("GET", "", None),
        ("GET", "/history", None),
        ("GET", "/versions/0", None),
        ("GET", "/participants", None),
        ("POST", "/restore", {"version": 0}),
    ]:
        response = httpx.request(method, base + path, json=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (403, "forbidden_document")
    assert httpx.get(f"{stack.http()}/v1/documents/mine", headers=headers).status_code == 200


async def test_the_document_comes_from_the_connection_never_from_a_message(stack) -> None:
    ws, _ = await hello(stack, "room-a", stack.token("ada"))
    async with ws:
        message = {"type": "op", "id": "x1", "v": 0, "op": ["here"], "doc": "room-b"}
        await ws.send(json.dumps(message))
        assert (await answer(ws))["type"] == "ack"
    assert stack.document("room-a")["text"] == "here"
    assert stack.document("room-b")["version"] == 0


async def test_a_second_hello_changes_neither_identity_nor_role(stack) -> None:
    """Row 13: a hello on an open connection is ``bad_message``; the first identity stays."""
    ws, _ = await hello(stack, "second-hello", stack.token("vic", role="viewer"), client="cv")
    async with ws:
        editor = stack.token("boss", role="editor")
        await ws.send(json.dumps({"type": "hello", "token": editor, "client": "cb"}))
        error = await answer(ws)
        assert (error["code"], error["message"]) == ("bad_message", "hello was already received")
        await ws.send(json.dumps({"type": "op", "id": "o", "v": 0, "op": ["x"]}))
        assert (await answer(ws))["code"] == "forbidden"
    assert stack.document("second-hello")["version"] == 0


# -- 3. Origin allowlist -------------------------------------------------------------------


@pytest.fixture
def origins(stack_factory):
    return stack_factory(COLLAB_GATEWAY_ALLOWED_ORIGINS='["https://editor.example"]')


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://editor.example.evil.example",
        "https://editor.example:8443",
        "http://editor.example",
        "https://EDITOR.example.evil",
        "null",
        "https://evil.example/https://editor.example",
    ],
)
async def test_origins_not_exactly_on_the_allowlist_are_refused_before_upgrade(origins, origin):
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(origins.ws_url("origins"), origin=origin)
    assert refused.value.response.status_code == 403


async def test_allowed_same_origin_and_originless_connections_are_accepted(origins) -> None:
    same = f"http://127.0.0.1:{origins.gateway.port}"
    for origin in ("https://editor.example", same, None):
        ws, welcome = await hello(origins, "origins", origins.token(), origin=origin)
        await ws.close()
        assert welcome["doc"] == "origins"


# -- 4. Rate limit per connection and connection cap per user ------------------------------


async def test_the_rate_limit_is_per_connection(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_MESSAGES_PER_SECOND="5")
    flooder, _ = await hello(stack, "limits", stack.token("ada"), client="c1")
    calm, _ = await hello(stack, "limits", stack.token("ada"), client="c2")
    async with flooder, calm:
        for n in range(40):
            await flooder.send(json.dumps({"type": "heartbeat", "timestamp": n}))
        frames, close = await until_closed(flooder)
        assert close == 4008
        assert "rate_limited" in [f.get("code") for f in frames]
        # The same user's other connection is not limited by it.
        await calm.send(json.dumps({"type": "op", "id": "ok", "v": 0, "op": ["calm"]}))
        assert await answer(calm) == {"type": "ack", "id": "ok", "v": 0}


async def test_the_connection_cap_is_per_user(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_CONNECTIONS_PER_USER="2")
    held = [(await hello(stack, "cap", stack.token("ada"), client=f"a{n}"))[0] for n in range(2)]
    async with websockets.connect(stack.ws_url("cap")) as third:
        await third.send(json.dumps({"type": "hello", "token": stack.token("ada"), "client": "a"}))
        frames, close = await until_closed(third)
    assert ([f["code"] for f in frames], close) == (["rate_limited"], 4008)
    other, _ = await hello(stack, "cap", stack.token("lin"), client="l1")
    for ws in [*held, other]:
        await ws.close()


# -- 5. Token expiry closes the socket -----------------------------------------------------


async def test_an_expired_token_closes_the_socket_and_later_ops_are_not_committed(stack) -> None:
    ws, _ = await hello(stack, "expiry", stack.token("ada", ttl=3))
    async with ws:
        await ws.send(json.dumps({"type": "op", "id": "before", "v": 0, "op": ["kept "]}))
        assert (await answer(ws))["type"] == "ack"
        frames, close = await until_closed(ws)
        with pytest.raises(ConnectionClosed):
            await ws.send(json.dumps({"type": "op", "id": "after", "v": 1, "op": ["late"]}))
    assert close == 4001
    assert frames[-1] == {"type": "error", "code": "unauthorized", "message": "token expired"}
    assert stack.document("expiry")["text"] == "kept "
    response = httpx.get(
        f"{stack.http()}/v1/documents/expiry",
        headers={"Authorization": f"Bearer {stack.token('ada', ttl=-1)}"},
    )
    assert response.status_code == 401


# -- 6. Identity comes from the token and the server, never from the client ----------------


async def test_identity_fields_in_an_op_are_ignored(stack) -> None:
    """Row 27: an op carrying another user's author, session and client is attributed to
    the token's user, the connection's session and the hello's client."""
    victim, victim_welcome = await hello(stack, "spoof", stack.token("victim"), client="cv")
    mallory, welcome = await hello(stack, "spoof", stack.token("mallory"), client="cm")
    async with victim, mallory:
        forged = {
            "type": "op",
            "id": "m1",
            "v": 0,
            "op": ["forged? "],
            "author": "victim",
            "session": victim_welcome["session"],
            "client": "cv",
            "user": {"id": "victim", "name": "Victim"},
        }
        await mallory.send(json.dumps(forged))
        assert await answer(mallory) == {"type": "ack", "id": "m1", "v": 0}
        seen = await answer(victim, ("op",))
        presence = {
            "type": "presence",
            "v": 1,
            "cursor": None,
            "session": victim_welcome["session"],
            "user": {"id": "victim", "name": "Victim", "color": "#000000"},
        }
        await mallory.send(json.dumps(presence))
        relayed = await answer(victim, ("presence",))
    assert (seen["author"], seen["client"], seen["session"]) == (
        "mallory",
        "cm",
        welcome["session"],
    )
    [entry] = stack.history("spoof")
    assert (entry["author"], entry["client"]) == ("mallory", "cm")
    assert relayed["session"] == welcome["session"]
    assert relayed["user"]["id"] == "mallory"


async def test_replaying_another_users_client_and_op_id_neither_acks_nor_suppresses_theirs(
    stack,
) -> None:
    """Row 40: deduplication is scoped by the authenticated user. Mallory reusing the
    victim's client id and op id commits her own op; it is not taken for the victim's, and
    the victim's resend is still recognised as the victim's."""
    victim, _ = await hello(stack, "replay", stack.token("victim"), client="shared-client")
    async with victim:
        await victim.send(json.dumps({"type": "op", "id": "op-1", "v": 0, "op": ["mine "]}))
        assert await answer(victim) == {"type": "ack", "id": "op-1", "v": 0}
        mallory, _ = await hello(stack, "replay", stack.token("mallory"), client="shared-client")
        async with mallory:
            await mallory.send(json.dumps({"type": "op", "id": "op-1", "v": 0, "op": ["mine "]}))
            assert await answer(mallory) == {"type": "ack", "id": "op-1", "v": 1}
            await victim.send(json.dumps({"type": "op", "id": "op-1", "v": 0, "op": ["mine "]}))
            assert await answer(victim, ("ack",)) == {"type": "ack", "id": "op-1", "v": 0}
    history = stack.history("replay")
    assert [(e["author"], e["id"]) for e in history] == [("victim", "op-1"), ("mallory", "op-1")]


# -- 7. Logs carry no tokens and no document text ------------------------------------------

SECRET_TEXT = "CANARY-TEXT-7f3a1c-quarterly-numbers"
SECRET_META = "CANARY-META-9b2e44"


async def test_service_logs_contain_no_tokens_and_no_document_text(stack_factory) -> None:
    """Every service at its default log level (info) through a run that exercises the
    paths that log: errors, refusals, bad and expired tokens, tokens in URLs, a restore."""
    stack = stack_factory(
        COLLAB_GATEWAY_LOG_LEVEL="info",
        COLLAB_TRANSFORM_LOG_LEVEL="info",
        COLLAB_PRESENCE_LOG_LEVEL="info",
    )
    doc = "canary"
    token = stack.token("canary-user")
    expired = stack.token("canary-user", ttl=-5)
    other = stack.token("canary-user", doc="elsewhere")
    async with CollabClient(stack.ws_url(doc), token) as client:
        await client.synced()
        client.insert(0, SECRET_TEXT)
        client.set_cursor(3, typing=SECRET_META)
        await client.synced()
    ws, _ = await hello(stack, doc, token)
    async with ws:
        await ws.send(json.dumps({"type": "op", "id": "bad", "v": 0, "op": [99, SECRET_TEXT]}))
        await ws.send(json.dumps({"type": "op", "id": "bad2", "v": 9, "op": [SECRET_TEXT]}))
        await ws.send('{"type":"op","id":"bad3","v":1,"op":["' + SECRET_TEXT + '"')
        for _ in range(3):
            await answer(ws, ("error",))
    for bad in (expired, other, token[:-4] + "AAAA"):
        async with websockets.connect(f"{stack.ws_url(doc)}?token={bad}") as ws:
            await ws.send(json.dumps({"type": "hello", "token": bad, "client": "c"}))
            await until_closed(ws)
    for bad in (token, expired, other):
        httpx.get(f"{stack.http()}/v1/documents/{doc}?token={bad}")
        httpx.get(f"{stack.http()}/v1/documents/{doc}", headers={"Authorization": f"Bearer {bad}"})
    httpx.post(
        f"{stack.http()}/v1/documents/{doc}/restore",
        json={"version": 0},
        headers={"Authorization": f"Bearer {token}"},
    )
    for service in stack.services:
        service.stop()
    logs = {s.name: s.log_path.read_text() for s in stack.services}
    assert any(logs.values()), "the services logged nothing: the check would prove nothing"
    for name, text in logs.items():
        for secret in (token, expired, other):
            signature = secret.rsplit(".", 1)[1]
            assert signature not in text, f"{name} logged a token"
            assert secret.split(".")[1][:24] not in text, f"{name} logged token claims"
        assert SECRET_TEXT not in text, f"{name} logged document text"
        assert SECRET_META not in text, f"{name} logged presence meta"
