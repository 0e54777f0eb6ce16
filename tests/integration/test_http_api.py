"""The gateway's HTTP API against real services."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from collab_client.connection import CollabClient


def get(stack, path: str, token: str | None = None, **params):
    headers = {"Authorization": f"Bearer {token or stack.token()}"}
    return httpx.get(f"{stack.http()}{path}", headers=headers, params=params, timeout=10)


async def write(stack, doc: str, steps: list[list[object]]) -> CollabClient:
    client = CollabClient(stack.ws_url(doc), stack.token("ada"))
    client.start()
    await client.synced()
    for op in steps:
        client.edit(op)
        await client.synced()
    return client


async def test_document_history_and_versions(stack) -> None:
    client = await write(stack, "api", [["hello"], [5, " world"], [{"d": 1}, "H"]])
    try:
        assert get(stack, "/v1/documents/api").json() == {
            "id": "api",
            "version": 3,
            "text": "Hello world",
        }
        history = get(stack, "/v1/documents/api/history", **{"from": 1, "limit": 5}).json()
        assert history["version"] == 3
        assert [(op["v"], op["op"], op["author"]) for op in history["ops"]] == [
            (1, [5, " world"], "ada"),
            (2, [{"d": 1}, "H"], "ada"),
        ]
        assert all(op["client"] == client.client_id for op in history["ops"])
        assert all(isinstance(op["ts"], float) for op in history["ops"])
        texts = [get(stack, f"/v1/documents/api/versions/{v}").json()["text"] for v in range(4)]
        assert texts == ["", "hello", "hello world", "Hello world"]
        missing = get(stack, "/v1/documents/api/versions/4")
        assert missing.status_code == 404
        assert missing.json()["error"] == "invalid_version"
    finally:
        await client.close()


async def test_restore_commits_one_op_that_everyone_sees(stack) -> None:
    client = await write(stack, "restore", [["draft one"], [6, {"d": 3}, "two"]])
    try:
        response = httpx.post(
            f"{stack.http()}/v1/documents/restore/restore",
            json={"version": 1},
            headers={"Authorization": f"Bearer {stack.token('lin')}"},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"version": 3}
        await client.reaches(3)
        assert client.text == "draft one"
        last = get(stack, "/v1/documents/restore/history", **{"from": 2}).json()["ops"][0]
        assert last["client"] == "server"
        assert last["author"] == "lin"
        viewer = httpx.post(
            f"{stack.http()}/v1/documents/restore/restore",
            json={"version": 0},
            headers={"Authorization": f"Bearer {stack.token('vic', role='viewer')}"},
            timeout=15,
        )
        assert viewer.status_code == 403
        assert viewer.json()["error"] == "forbidden"
        assert get(stack, "/v1/documents/restore").json()["version"] == 3
    finally:
        await client.close()


async def test_participants_lists_connected_sessions(stack) -> None:
    async with (
        CollabClient(stack.ws_url("people"), stack.token("ada")) as ada,
        CollabClient(stack.ws_url("people"), stack.token("lin")) as lin,
    ):
        await ada.synced()
        await lin.synced()
        ada.set_cursor(0)
        for _ in range(50):
            body = get(stack, "/v1/documents/people/participants").json()
            if len(body["participants"]) == 2 and any(
                p.get("cursor") for p in body["participants"]
            ):
                break
            await asyncio.sleep(0.1)
        users = sorted(p["user"]["id"] for p in body["participants"])
        assert users == ["ada", "lin"]
        assert all(
            set(p) <= {"session", "user", "role", "v", "cursor"} for p in body["participants"]
        )


@pytest.mark.parametrize(
    ("path", "token_kind", "status", "code"),
    [
        ("/v1/documents/doc", None, 401, "unauthorized"),
        ("/v1/documents/doc", "garbage", 401, "unauthorized"),
        ("/v1/documents/doc", "other", 403, "forbidden_document"),
        ("/v1/documents/bad%20id", "ok", 400, "bad_message"),
        ("/v1/documents/doc/history?limit=1001", "ok", 422, None),
        ("/v1/documents/doc/history?from=-1", "ok", 422, None),
        ("/v1/documents/doc/versions/-1", "ok", 422, None),
    ],
)
def test_http_errors(stack, path, token_kind, status, code) -> None:
    headers = {}
    if token_kind == "garbage":
        headers["Authorization"] = "Bearer nope"
    elif token_kind == "other":
        headers["Authorization"] = f"Bearer {stack.token(doc='other')}"
    elif token_kind == "ok":
        headers["Authorization"] = f"Bearer {stack.token()}"
    response = httpx.get(f"{stack.http()}{path}", headers=headers, timeout=10)
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"] == code


def test_health_readiness_and_metrics(stack) -> None:
    base = stack.http()
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
    metrics = httpx.get(f"{base}/metrics").text
    assert "collab_gateway_connections" in metrics
    for service in stack.services:
        assert httpx.get(f"http://127.0.0.1:{service.port}/readyz").status_code == 200
        assert "collab_" in httpx.get(f"http://127.0.0.1:{service.port}/metrics").text
