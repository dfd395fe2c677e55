"""The FastAPI application: thin routes (`liandong.api.routes`) over `liandong.services`.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import asyncio
import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liandong import __version__
from liandong.api.deps import Shop, ShopContext
from liandong.api.routes import catalogue, funds, merchants, orders, pages, shop, stats
from liandong.core.config import Settings
from liandong.core.errors import LiandongError, RequestTimeoutError, TooLargeError

log = logging.getLogger(__name__)


async def _refused(request: Request, error: Exception) -> Response:
    """Every `LiandongError` a route or dependency raises, answered as its kind says; the shop's
    own failures (the root itself) as any unexpected error."""
    assert isinstance(error, LiandongError)
    if error.status == LiandongError.status:
        return await _unexpected(request, error)
    log.debug("%s %s refused: %s (%d)", request.method, request.url.path, error.code, error.status)
    return JSONResponse(status_code=error.status, content={"detail": str(error)}, headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # The trace goes to the node's log (which never holds key plaintext: keys are only ever in
    # local variables of the vault and the sealing code); the client gets no internals.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "internal error; the shop's log has the details"})


STREAMED_BODIES = re.compile(r"/api/merchant/products/[^/]+/keys")
"""Routes that read their body as a stream with a cap of their own (the key import, 64 MiB)."""


class BodyTooLargeError(TooLargeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request bodies up to {limit} bytes")


class BodyTimeoutError(RequestTimeoutError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body stalled for {seconds:g} s")


class RequestLimits:
    """Caps every request body but the streamed imports at `max_bytes` (413: a declared
    Content-Length at once, before anything is read; a chunked body as soon as it passes the cap)
    and drops bodies that stall longer than `read_seconds` between two chunks (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_seconds: float) -> None:
        self.app, self.max_bytes, self.read_seconds = app, max_bytes, read_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capped = not STREAMED_BODIES.fullmatch(scope["path"])
        if capped:
            declared = dict(scope["headers"]).get(b"content-length", b"0")
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await _refuse(send, BodyTooLargeError(self.max_bytes))
                return
        seen, finished = 0, False
        refusal: LiandongError | None = None
        started = False

        async def limited() -> Message:
            nonlocal seen, finished, refusal
            if finished:  # the body is read: what follows is waiting for the client to leave
                return await receive()
            try:
                async with asyncio.timeout(self.read_seconds):
                    message = await receive()
            except TimeoutError:
                refusal = BodyTimeoutError(self.read_seconds)
                return {"type": "http.disconnect"}  # the app stops reading; the refusal is ours
            seen += len(message.get("body", b""))
            finished = message["type"] != "http.request" or not message.get("more_body", False)
            if capped and seen > self.max_bytes:
                refusal = BodyTooLargeError(self.max_bytes)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refusal is not None and not started:
                return  # the app's answer to a body it never got whole is replaced by the refusal
            started = True
            await send(message)

        await self.app(scope, limited, guarded)
        if refusal is not None and not started:
            await _refuse(send, refusal)


async def _refuse(send: Send, refusal: LiandongError) -> None:
    """The refusal answered by the middleware itself, as the exception handler would, and the
    connection closed (the rest of the body is not read)."""
    body = json.dumps({"detail": str(refusal)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [*headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings that bound what one client holds: idle keep-alive connections, the
    size of a WebSocket message (an order page's are tiny), dead WebSockets found by pings; and no
    per-message deflate: events are a few hundred bytes, and compressing each one for each page
    cost the node more CPU than sending it (nor can a compressed message then inflate past the
    size limit's meaning)."""
    return {
        "timeout_keep_alive": settings.keep_alive_seconds,
        "ws_max_size": settings.max_json_bytes,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "h11_max_incomplete_event_size": 16 * 1024,
    }


def create_app(context: ShopContext) -> FastAPI:
    app = FastAPI(
        title="链动小铺 Liandong",
        version=__version__,
        description=(
            "A card-key shop paid through an on-chain escrow. Buyers quote, pay with their wallet and "
            "read their keys sealed to their browser's key; merchants manage products, keys, orders, "
            "delivery channels and watch the efficiency board."
        ),
    )
    app.state.shop = context
    if context.settings.cors_origins:  # closed unless the merchant names the origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=context.settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Order-Token"],
        )
    app.add_exception_handler(LiandongError, _refused)
    app.add_exception_handler(Exception, _unexpected)

    @app.get("/healthz", tags=["operations"])
    def healthz(context: Shop) -> dict[str, Any]:
        return context.health()

    for module in (shop, merchants, catalogue, orders, stats, funds, pages):
        app.include_router(module.router)
    app.mount("/static", pages.static_files(), name="static")
    settings = context.settings
    app.add_middleware(
        RequestLimits, max_bytes=settings.max_json_bytes, read_seconds=settings.request_read_seconds
    )
    return app
