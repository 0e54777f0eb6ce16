"""The gateway's ASGI application: routes and the lifespan that runs the stream reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.routing import WebSocketRoute

from collab_core.service import REDIS_ERRORS, close, connect
from collab_gateway import api, web
from collab_gateway.endpoint import collaborate
from collab_gateway.gateway import Gateway
from collab_gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings, redis: Redis | None = None) -> FastAPI:
    gateway = Gateway(settings, redis if redis is not None else connect(settings.redis_url))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.run(), name="gateway-run")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await close(gateway.redis)

    app = FastAPI(
        title="collab gateway",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.add_exception_handler(api.ApiError, api.api_error_handler)
    for error in REDIS_ERRORS:
        if issubclass(error, Exception):
            app.add_exception_handler(error, api.store_error_handler)
    app.include_router(api.router)
    app.include_router(web.router)
    # ``:path`` so that any id, even empty or with a slash, reaches the endpoint, which
    # completes the upgrade and closes 4000 (PROTOCOL.md, "Connecting"), not a bare 403.
    app.router.routes.append(WebSocketRoute("/v1/collaborate/{document_id:path}", collaborate))
    return app
