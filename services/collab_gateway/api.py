"""The gateway's HTTP API (PROTOCOL.md, "HTTP API"): documents, history, versions,
restore, participants, health and metrics.

Every ``/v1`` route takes ``Authorization: Bearer <token>`` with the same claims as the
WebSocket, checked for the document on every request. Errors answer
``{"error": <code>, "message": …}`` with the protocol's error codes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated, Any

import msgspec
import prometheus_client
from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from collab_core import keys, ot
from collab_core.auth import Claims, is_document_id
from collab_core.errors import ErrorCode, ProtocolError
from collab_core.ingress import Submission
from collab_gateway.gateway import Gateway

router = APIRouter()

RESTORE_TIMEOUT = 10.0

_STATUS = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN_DOCUMENT: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.BAD_MESSAGE: 400,
    ErrorCode.INVALID_VERSION: 404,
    ErrorCode.INVALID_OP: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 503,
}


class ApiError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def api_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.code is ErrorCode.UNAUTHORIZED else None
    return JSONResponse(
        {"error": exc.code.value, "message": exc.message},
        status_code=_STATUS.get(exc.code, 400),
        headers=headers,
    )


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """Redis unreachable or refusing writes: ``internal``, nothing was done (PROTOCOL.md)."""
    if request.scope["type"] != "http":
        raise exc  # the WebSocket endpoint handles its own
    return JSONResponse(
        {"error": ErrorCode.INTERNAL.value, "message": "store unavailable; retry"},
        status_code=_STATUS[ErrorCode.INTERNAL],
    )


def _json(data: Any) -> Response:
    return Response(msgspec.json.encode(data), media_type="application/json")


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _authorize(request: Request, document_id: str, authorization: str | None) -> Claims:
    if not is_document_id(document_id):
        raise ApiError(ErrorCode.BAD_MESSAGE, "invalid document id")
    if authorization is None or not authorization.startswith("Bearer "):
        raise ApiError(ErrorCode.UNAUTHORIZED, "missing bearer token")
    try:
        return _gateway(request).codec.authorize(
            authorization.removeprefix("Bearer ").strip(), document_id, now=time.time()
        )
    except ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None


Auth = Annotated[str | None, Header(description="Bearer <token>")]


@router.get("/v1/documents/{document_id}", tags=["documents"])
async def get_document(document_id: str, request: Request, authorization: Auth = None) -> Response:
    """The document's current version and text."""
    _authorize(request, document_id, authorization)
    version, text = await _gateway(request).store.current(document_id)
    return _json({"id": document_id, "version": version, "text": text})


@router.get("/v1/documents/{document_id}/history", tags=["documents"])
async def get_history(
    document_id: str,
    request: Request,
    authorization: Auth = None,
    from_: Annotated[int, Query(alias="from", ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Committed ops with ``from <= v < from + limit``."""
    _authorize(request, document_id, authorization)
    store = _gateway(request).store
    head = await store.head(document_id)
    entries = await store.entries(document_id, from_, min(from_ + limit, head.version))
    ops = [
        {
            "v": e.v,
            "op": msgspec.Raw(e.op_json),
            "author": e.author,
            "client": e.client,
            "id": e.id,
            "ts": e.ts,
        }
        for e in entries
    ]
    return _json({"version": head.version, "ops": ops})


@router.get("/v1/documents/{document_id}/versions/{version}", tags=["documents"])
async def get_version(
    document_id: str,
    version: Annotated[int, Path(ge=0, le=2**53)],
    request: Request,
    authorization: Auth = None,
) -> Response:
    """The text as it was at ``version``."""
    _authorize(request, document_id, authorization)
    store = _gateway(request).store
    head = await store.head(document_id)
    if version > head.version:
        raise ApiError(ErrorCode.INVALID_VERSION, f"version {version} is ahead of the document")
    return _json({"version": version, "text": await store.text_at(document_id, version)})


class RestoreRequest(BaseModel):
    version: int = Field(ge=0, le=2**53)


@router.post("/v1/documents/{document_id}/restore", tags=["documents"])
async def restore(
    document_id: str,
    request: Request,
    body: Annotated[RestoreRequest, Body()],
    authorization: Auth = None,
) -> Response:
    """Commit one op that turns the document back into its text at ``version``."""
    claims = _authorize(request, document_id, authorization)
    if not claims.can_edit:
        raise ApiError(ErrorCode.FORBIDDEN, "viewers cannot restore")
    gateway = _gateway(request)
    store = gateway.store
    current, text = await store.current(document_id)
    if body.version > current:
        raise ApiError(
            ErrorCode.INVALID_VERSION, f"version {body.version} is ahead of the document"
        )
    target = await store.text_at(document_id, body.version)
    op_id = f"restore-{secrets.token_hex(6)}"
    session = f"http-{secrets.token_hex(6)}"
    submission = Submission(
        doc=document_id,
        client="server",
        id=op_id,
        v=current,
        op=ot.replace(text, target),
        author=claims.sub,
        session=session,
        gateway=gateway.id,
        ts=time.time(),
    )
    waiter = gateway.reader.expect(session)
    try:
        await gateway.submit(submission)
        committed = await _committed_version(gateway, document_id, current, op_id, waiter)
    finally:
        gateway.reader.forget(session)
    return _json({"version": committed + 1})


async def _committed_version(
    gateway: Gateway, document_id: str, start: int, op_id: str, waiter: asyncio.Future[Any]
) -> int:
    """Wait until the restore op appears in the log (or edit-transform refuses it)."""
    deadline = time.monotonic() + RESTORE_TIMEOUT
    cursor = f"{start}-0"
    log_key = keys.log(document_id)
    while time.monotonic() < deadline:
        if waiter.done():
            reply = waiter.result()
            if reply.kind == "ack":
                return int(reply.v)
            raise ApiError(ErrorCode(reply.code), reply.message)
        found: Any = await gateway.redis.xread({log_key: cursor}, count=100, block=100)
        for _, entries in found or []:
            for entry_id, fields in entries:
                cursor = entry_id
                if fields.get(b"id") == op_id.encode() and fields.get(b"client") == b"server":
                    return keys.version_of_entry(entry_id)
    raise ApiError(ErrorCode.INTERNAL, "restore not committed in time")


@router.get("/v1/documents/{document_id}/participants", tags=["documents"])
async def get_participants(
    document_id: str, request: Request, authorization: Auth = None
) -> Response:
    """The sessions connected to the document now, on every gateway."""
    _authorize(request, document_id, authorization)
    participants = await _gateway(request).participants(document_id)
    return _json({"participants": participants})


@router.get("/healthz", tags=["health"])
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> Response:
    gateway = _gateway(request)
    if gateway.ready:
        return _json({"status": "ready"})
    reason = "draining" if gateway.draining else "store lost" if gateway.store_lost else "no redis"
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


@router.get("/metrics", tags=["health"])
async def metrics() -> Response:
    return Response(
        prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
