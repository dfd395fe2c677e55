"""The FastAPI application: thin routes (`liandong.api.routes`) over `liandong.services`.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from liandong import __version__
from liandong.api.deps import Shop, ShopContext
from liandong.api.routes import catalogue, merchants, orders, shop, stats
from liandong.core.ratelimit import RateLimitExceededError
from liandong.web import pages

log = logging.getLogger(__name__)


async def _too_many_requests(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RateLimitExceededError)
    return JSONResponse(
        status_code=429, content={"detail": str(error)}, headers={"Retry-After": str(error.retry_after)}
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # The trace goes to the node's log (which never holds key plaintext: keys are only ever in
    # local variables of the vault and the sealing code); the client gets no internals.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "internal error; the shop's log has the details"})


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
    app.add_exception_handler(RateLimitExceededError, _too_many_requests)
    app.add_exception_handler(Exception, _unexpected)

    @app.get("/healthz", tags=["operations"])
    def healthz(context: Shop) -> dict[str, Any]:
        return context.health()

    for module in (shop, merchants, catalogue, orders, stats, pages):
        app.include_router(module.router)
    app.mount("/static", pages.static_files(), name="static")
    return app
