"""What the routes share: the shop's running parts, authentication and rate limits.

No `from __future__ import annotations` here: FastAPI reads the dependency signatures at run time.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request, WebSocket, WebSocketDisconnect
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import Settlement
from liandong.core.config import Settings
from liandong.core.ratelimit import RateLimit
from liandong.delivery.channels import DeliveryNotice, OrderEventHub
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.services.buyer_auth import BuyerAuthError, buyer_address
from liandong.services.imports import ImportJobs
from liandong.services.merchant_auth import (
    AuthError,
    ScopeError,
    authenticate_api_token,
    merchant_for_session,
)
from liandong.store.models import MAX_ROW_ID, DeliveryAttempt
from liandong.vault.service import Vault

SESSION_COOKIE = "liandong_session"
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


@dataclass
class ShopContext:
    """The node's parts the API works with; built once by the node (or a test) per app."""

    settings: Settings
    engine: Engine
    vault: Vault
    hub: OrderEventHub
    domain: EscrowDomain
    operator_key: str
    settle: Callable[[Sequence[Settlement]], None]
    """Queues on-chain settlements (the settlement sender's `submit`)."""
    resend: Callable[[Sequence[DeliveryNotice]], Awaitable[list[DeliveryAttempt]]]
    """Sends notices through the channels again and records the attempts."""
    channels: ChannelRouter
    templates: TemplateBook
    on_channels_changed: Callable[[], None]
    health: Callable[[], dict[str, Any]]
    imports: ImportJobs = field(init=False)
    quote_limit: RateLimit = field(init=False)
    key_limit: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.imports = ImportJobs(self.engine, self.vault, self._stock_added)
        self.quote_limit = RateLimit.parse(self.settings.quote_rate_limit)
        self.key_limit = RateLimit.parse(self.settings.key_rate_limit)

    def _stock_added(self, product_id: int, count: int) -> None:
        self.hub.publish_feed({"type": "stock", "product_id": product_id, "change": count})

    def session(self) -> Session:
        return Session(self.engine)


async def stream_events(
    websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]], unsubscribe: Callable[[], None]
) -> None:
    """Sends the queue's events to the client until it leaves; the socket is already accepted."""
    try:
        while True:
            await websocket.send_json(await queue.get())
    except (WebSocketDisconnect, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()


def shop(request: Request) -> ShopContext:
    context: ShopContext = request.app.state.shop
    return context


def ws_shop(websocket: WebSocket) -> ShopContext:
    context: ShopContext = websocket.app.state.shop
    return context


Shop = Annotated[ShopContext, Depends(shop)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def quote_rate(request: Request, context: Shop) -> None:
    context.quote_limit.hit(_client(request))


def key_rate(request: Request, context: Shop) -> None:
    context.key_limit.hit(_client(request))


# ------------------------------------------------------------------ merchants

_api_token = HTTPBearer(
    auto_error=False, scheme_name="ApiToken", description="A merchant API token (`ld_…`), scoped."
)
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, scheme_name="DashboardSession", description="Set by login."
)


@dataclass(frozen=True)
class MerchantIdentity:
    id: int
    username: str


def merchant(scope: str) -> Callable[..., MerchantIdentity]:
    """A dependency that lets in a dashboard session, or an API token holding `scope`."""

    def authenticate(
        context: Shop,
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_token)],
        cookie: Annotated[str | None, Depends(_session_cookie)],
    ) -> MerchantIdentity:
        with context.session() as session:
            try:
                if token is not None:
                    found = authenticate_api_token(session, token.credentials, scope)
                elif cookie:
                    found = merchant_for_session(session, cookie)
                else:
                    raise AuthError("log in, or send an API token")
            except ScopeError as error:
                raise HTTPException(status_code=403, detail=str(error)) from None
            except AuthError as error:
                raise HTTPException(
                    status_code=401, detail=str(error), headers={"WWW-Authenticate": "Bearer"}
                ) from None
            assert found.id is not None
            return MerchantIdentity(found.id, found.username)

    return authenticate


def feed_merchant(websocket: WebSocket) -> MerchantIdentity | None:
    """The dashboard's feed: the session cookie (browsers send it on WebSocket upgrades), or an API
    token with `orders:read` in the `token` query parameter (WebSocket clients cannot set headers)."""
    context = ws_shop(websocket)
    cookie, token = websocket.cookies.get(SESSION_COOKIE), websocket.query_params.get("token")
    with context.session() as session:
        try:
            if token:
                found = authenticate_api_token(session, token, "orders:read")
            elif cookie:
                found = merchant_for_session(session, cookie)
            else:
                return None
        except AuthError:
            return None
    assert found.id is not None
    return MerchantIdentity(found.id, found.username)


# ------------------------------------------------------------------ buyers

_buyer_session = HTTPBearer(
    auto_error=False,
    scheme_name="BuyerSession",
    description="A wallet session from Sign-In with Ethereum (`POST /api/buyer/session`).",
)


@dataclass(frozen=True)
class BuyerProof:
    """What opens an order: its secret token, or the session of a wallet."""

    order_token: str | None
    wallet: str | None


def buyer_wallet(
    context: Shop, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_buyer_session)]
) -> str:
    if credentials is None:
        raise HTTPException(status_code=401, detail="sign in with your wallet first")
    with context.session() as session:
        try:
            return buyer_address(session, credentials.credentials)
        except BuyerAuthError as error:
            raise HTTPException(status_code=401, detail=str(error)) from None


def buyer_proof(
    context: Shop,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_buyer_session)],
    x_order_token: Annotated[
        str | None, Header(max_length=200, description="The secret token issued with the quote.")
    ] = None,
) -> BuyerProof:
    if x_order_token:
        return BuyerProof(order_token=x_order_token, wallet=None)
    if credentials is not None:
        return BuyerProof(order_token=None, wallet=buyer_wallet(context, credentials))
    raise HTTPException(status_code=401, detail="send the order token (X-Order-Token) or a wallet session")
