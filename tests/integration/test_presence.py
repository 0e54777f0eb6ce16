"""Presence: join, cursors, leave, and timeouts when a gateway dies."""

from __future__ import annotations

import asyncio
import json
import time

import websockets

from collab_client.connection import CollabClient


async def next_of(ws, kind: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def join(stack, doc: str, user: str, gateway=None):
    ws = await websockets.connect(stack.ws_url(doc, gateway))
    await ws.send(json.dumps({"type": "hello", "token": stack.token(user), "client": user}))
    welcome = json.loads(await ws.recv())
    return ws, welcome


async def test_join_presence_and_leave(stack) -> None:
    ada, _ = await join(stack, "cursors", "ada")
    lin, wl = await join(stack, "cursors", "lin")
    joined = await next_of(ada, "join")
    assert joined["participant"]["session"] == wl["session"]
    assert joined["participant"]["user"]["id"] == "lin"
    await lin.send(json.dumps({"type": "op", "id": "1", "v": 0, "op": ["hello"]}))
    await lin.send(
        json.dumps(
            {
                "type": "presence",
                "v": 1,
                "cursor": {"anchor": 2, "head": 5},
                "meta": {"typing": True},
            }
        )
    )
    presence = await next_of(ada, "presence")
    assert presence == {
        "type": "presence",
        "session": wl["session"],
        "user": wl["user"],
        "v": 1,
        "cursor": {"anchor": 2, "head": 5},
        "meta": {"typing": True},
    }
    await lin.close()
    left = await next_of(ada, "leave")
    assert left == {"type": "leave", "session": wl["session"], "reason": "closed"}
    await ada.close()


async def test_cursor_updates_are_coalesced(stack) -> None:
    ada, _ = await join(stack, "coalesce", "ada")
    lin, _ = await join(stack, "coalesce", "lin")
    await next_of(ada, "join")
    await lin.send(json.dumps({"type": "op", "id": "1", "v": 0, "op": ["x" * 50]}))
    for i in range(40):
        await lin.send(json.dumps({"type": "presence", "v": 1, "cursor": {"anchor": i, "head": i}}))
    seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            message = json.loads(await asyncio.wait_for(ada.recv(), 0.5))
        except TimeoutError:
            break
        if message["type"] == "presence":
            seen.append(message["cursor"]["anchor"])
    assert seen[-1] == 39
    assert len(seen) < 40
    await ada.close()
    await lin.close()


async def test_sessions_of_a_killed_gateway_leave_with_timeout(stack_factory) -> None:
    stack = stack_factory(gateways=2)
    survivor, doomed = stack.of("gateway")
    ada, _ = await join(stack, "orphans", "ada", survivor)
    _, wl = await join(stack, "orphans", "lin", doomed)
    await next_of(ada, "join")
    started = time.monotonic()
    doomed.kill()
    left = await next_of(ada, "leave", timeout=30)
    assert left == {"type": "leave", "session": wl["session"], "reason": "timeout"}
    assert time.monotonic() - started < 30
    await ada.close()


async def test_client_sees_remote_cursor_in_local_coordinates(stack) -> None:
    async with (
        CollabClient(stack.ws_url("mapped"), stack.token("ada")) as ada,
        CollabClient(stack.ws_url("mapped"), stack.token("lin")) as lin,
    ):
        await ada.synced()
        await lin.synced()
        ada.insert(0, "hello world")
        await ada.synced()
        await lin.reaches(1)
        lin.set_cursor(6, 11)
        await ada.wait_for(
            lambda: any(p.cursor is not None for p in ada.state.participants.values())
        )
        (peer,) = [p for p in ada.state.participants.values() if p.cursor is not None]
        assert (peer.cursor.anchor, peer.cursor.head) == (6, 11)
        ada.insert(0, ">> ")
        assert (peer := ada.state.participants[peer.session]).cursor is not None
        assert (peer.cursor.anchor, peer.cursor.head) == (9, 14)
