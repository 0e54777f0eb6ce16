"""The demo editor served by the gateway: a document picker at ``/``, an editor at
``/d/{document_id}``, its bundle under ``/static/``, and, in local development mode only
(``collab up``), an endpoint that mints a token for a name typed into the page.

The pages are static files shipped in the package (``static/``); the bundle is built
from ``clients/demo`` by esbuild and checked in, so the page works right after install.
A gateway started any other way never mints tokens: the page then asks for a token in
the URL (``#token=…``), which stays in the browser (fragments are not sent to servers).
"""

from __future__ import annotations

import re
import secrets
import time
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from collab_core.auth import Role, is_document_id
from collab_gateway.gateway import Gateway

router = APIRouter(include_in_schema=False)

STATIC = resources.files("collab_gateway") / "static"
DEV_TOKEN_TTL = 24 * 3600

# The pages load only their own script and style and talk only to this gateway.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSETS = {"demo.js": "text/javascript", "demo.css": "text/css"}


def _page(name: str) -> Response:
    return FileResponse(str(STATIC / name), media_type="text/html", headers=_HEADERS)


@router.get("/")
async def picker() -> Response:
    return _page("index.html")


@router.get("/d/{document_id}")
async def editor(document_id: str) -> Response:
    if not is_document_id(document_id):
        raise HTTPException(404, "no such document id")
    return _page("editor.html")


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(
        str(STATIC / name),
        media_type=media_type,
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )


class DevTokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role = Role.EDITOR


@router.post("/v1/dev/token")
async def dev_token(request: Request, body: Annotated[DevTokenRequest, Body()]) -> Response:
    """Mint a token for any name: only in ``collab up``'s insecure development mode."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.settings.dev_tokens:
        raise HTTPException(404, "tokens are not minted here; pass one as #token= in the URL")
    name = body.name.strip()
    if not name:
        raise HTTPException(422, "name must not be blank")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "user"
    user_id = f"{slug}-{secrets.token_hex(2)}"
    token = gateway.codec.mint(
        sub=user_id, name=name, doc="*", role=body.role, now=time.time(), ttl_seconds=DEV_TOKEN_TTL
    )
    return JSONResponse({"token": token, "user": user_id, "expires_in": DEV_TOKEN_TTL})


@router.get("/v1/dev/config")
async def dev_config(request: Request) -> Response:
    """Tells the page whether it may ask for a token (development mode) or needs one."""
    gateway: Gateway = request.app.state.gateway
    return JSONResponse({"dev_tokens": gateway.settings.dev_tokens})
