"""The FastAPI application: thin routes over `liandong.services`.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.delivery.channels import OrderEventHub
from liandong.services.orders import OrderAccessDeniedError, read_order
from liandong.vault.service import Vault


class OrderView(BaseModel):
    order: str
    status: str
    quantity: int
    keys: list[str]
    salt: str | None
    commitment: str | None


def create_app(
    engine: Engine, vault: Vault, hub: OrderEventHub, health: Callable[[], dict[str, Any]]
) -> FastAPI:
    app = FastAPI(title="Liandong", version="0.1.0")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return health()

    @app.get("/api/orders/{chain_order_id}")
    def get_order(
        chain_order_id: str,
        x_order_token: Annotated[str, Header()],
    ) -> OrderView:
        """The order's status and, once delivered, its keys with the salt of the on-chain commitment."""
        # The session closes before the response goes back to the event loop: with SQLite's
        # write lock taken at BEGIN, a session held until the response is sent could wait on a
        # loop that itself waits for that lock.
        try:
            with Session(engine) as session:
                found = read_order(session, vault, chain_order_id, x_order_token)
        except OrderAccessDeniedError:
            raise HTTPException(status_code=404, detail="no such order for this token") from None
        order = found.order
        return OrderView(
            order=order.chain_order_id,
            status=order.status.value,
            quantity=order.quantity,
            keys=found.keys,
            salt=order.salt if found.keys else None,
            commitment=order.commitment if found.keys else None,
        )

    @app.websocket("/api/orders/{chain_order_id}/events")
    async def order_events(websocket: WebSocket, chain_order_id: str) -> None:
        """Pushes the order's status changes; the keys themselves are read with the order token."""
        await websocket.accept()
        queue = hub.subscribe(chain_order_id)
        try:
            while True:
                await websocket.send_json(await queue.get())
        except (WebSocketDisconnect, asyncio.CancelledError):
            pass
        finally:
            hub.unsubscribe(chain_order_id, queue)

    return app
