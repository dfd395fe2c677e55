"""What the routes share: the shop's running parts, authentication and rate limits.

No `from __future__ import annotations` here: FastAPI reads the dependency signatures at run time.
"""

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Header, Path, Request, WebSocket, WebSocketDisconnect
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import Settlement
from liandong.core.config import Settings
from liandong.core.errors import ForbiddenError
from liandong.core.ratelimit import RateLimit, RateLimitExceededError, SocketCount
from liandong.delivery.channels import DeliveryNotice
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.events import OrderEventHub, StockEvent
from liandong.services.buyer_auth import BuyerAuthError, buyer_address
from liandong.services.buyer_keys import KeyRead, seal_orders
from liandong.services.catalogue import Pricing
from liandong.services.imports import ImportJobs
from liandong.services.merchant_auth import (
    SCOPES,
    AuthError,
    CredentialsError,
    ScopeError,
    authenticate_api_token,
    merchant_for_session,
    token_scopes,
)
from liandong.services.orders import Batched, IssuedQuote, QuoteAsk, QuoteSigner, issue_quotes
from liandong.store.models import MAX_ROW_ID, DeliveryAttempt, Merchant
from liandong.vault.service import Vault
from liandong.vault.transport import SealedKeys

SESSION_COOKIE = "liandong_session"
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


@dataclass
class ChainAccess:
    """One chain the shop takes payments on, as the API uses it."""

    name: str
    """The network's name (its profile's), shown to buyers instead of the chain id."""
    domain: EscrowDomain
    operator_key: str
    """Signs this chain's quotes; switched by the node when the escrow names a new operator."""
    rpc_url: str
    """The node's endpoint of this chain (the funds page; a local chain's wallet endpoint)."""


@dataclass
class ShopContext:
    """The node's parts the API works with; built once by the node (or a test) per app."""

    settings: Settings
    engine: Engine
    vault: Vault
    hub: OrderEventHub
    chains: dict[int, ChainAccess]
    """By chain id, the shop's first chain first."""
    pricing: Pricing
    """The tokens prices may name by symbol, per chain."""
    settle: Callable[[Sequence[Settlement]], None]
    """Queues on-chain settlements (the settlement sender's `submit`)."""
    resend: Callable[[Sequence[DeliveryNotice]], Awaitable[list[DeliveryAttempt]]]
    """Sends notices through the channels again and records the attempts."""
    channels: ChannelRouter
    templates: TemplateBook
    on_channels_changed: Callable[[], None]
    health: Callable[[], dict[str, Any]]
    imports: ImportJobs = field(init=False)
    quotes: Batched[QuoteAsk, IssuedQuote] = field(init=False)
    """Issues the API's quotes, a crowd's in one transaction."""
    keys: Batched[KeyRead, SealedKeys] = field(init=False)
    """Seals delivered keys for their buyers, a crowd's reads logged in one transaction."""
    quote_limit: RateLimit = field(init=False)
    key_limit: RateLimit = field(init=False)
    status_limit: RateLimit = field(init=False)
    signin_limit: RateLimit = field(init=False)
    ws_limit: RateLimit = field(init=False)
    sockets: SocketCount = field(init=False)

    def __post_init__(self) -> None:
        self.imports = ImportJobs(self.engine, self.vault, self._stock_added)
        # The operator keys are read at each batch: a key rotation switches one while the node runs.
        self.quotes = Batched(lambda asks: issue_quotes(self.engine, self.signers(), asks))
        self.keys = Batched(functools.partial(seal_orders, self.engine, self.vault))
        self.quote_limit = RateLimit.parse(self.settings.quote_rate_limit)
        self.key_limit = RateLimit.parse(self.settings.key_rate_limit)
        self.status_limit = RateLimit.parse(self.settings.status_rate_limit)
        self.signin_limit = RateLimit.parse(self.settings.signin_rate_limit)
        self.ws_limit = RateLimit.parse(self.settings.ws_rate_limit)
        self.sockets = SocketCount(self.settings.ws_max_per_client, self.settings.ws_max_total)

    @property
    def default_chain(self) -> int:
        """The shop's first chain: where prices and quotes that name no chain go."""
        return next(iter(self.chains))

    @property
    def domain(self) -> EscrowDomain:
        """The first chain's escrow."""
        return self.chains[self.default_chain].domain

    def signers(self) -> dict[int, QuoteSigner]:
        return {
            chain_id: QuoteSigner(chain.domain, chain.operator_key) for chain_id, chain in self.chains.items()
        }

    def _stock_added(self, product_id: int, count: int) -> None:
        self.hub.publish_stock(StockEvent(product_id, count))

    def session(self) -> Session:
        return Session(self.engine)


async def stream_events(
    websocket: WebSocket,
    queue: asyncio.Queue[dict[str, Any]],
    unsubscribe: Callable[[], None],
    on_message: Callable[[Any], Awaitable[None]] | None = None,
) -> None:
    """Sends the queue's events to the client until it leaves (heard at once, not at the next
    event, so its connection slot is freed); the client's messages go to `on_message`. The socket
    is already accepted."""

    async def send() -> None:
        while True:
            await websocket.send_json(await queue.get())

    async def receive() -> None:
        while True:
            message = await websocket.receive_json()
            if on_message is not None:
                await on_message(message)

    tasks = {asyncio.ensure_future(send()), asyncio.ensure_future(receive())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        pass  # the server is shutting the connection: it ends as when the client leaves
    finally:
        for task in tasks:
            task.cancel()
        unsubscribe()
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
        await websocket.close()


WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013


@contextlib.asynccontextmanager
async def socket_slot(websocket: WebSocket, context: ShopContext) -> AsyncIterator[bool]:
    """Admits a WebSocket within the client's open budget and the caps (per client, in all);
    yields whether it was admitted (a refused one is already closed) and counts it out after."""
    client = websocket.client.host if websocket.client else "unknown"
    try:
        context.ws_limit.hit(client)
    except RateLimitExceededError as error:
        await websocket.close(code=WS_TRY_AGAIN_LATER, reason=str(error))
        yield False
        return
    if not context.sockets.open(client):
        await websocket.close(code=WS_TRY_AGAIN_LATER, reason="too many open connections; try again later")
        yield False
        return
    try:
        yield True
    finally:
        context.sockets.close(client)


# The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, a hop through a worker thread (and the GIL) per dependency and request that costs
# more than the work itself, and a pool that busy routes have filled makes every request wait.
# On the event loop the rate limits' counters also see one request at a time.


async def shop(request: Request) -> ShopContext:
    context: ShopContext = request.app.state.shop
    return context


def ws_shop(websocket: WebSocket) -> ShopContext:
    context: ShopContext = websocket.app.state.shop
    return context


Shop = Annotated[ShopContext, Depends(shop)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def quote_rate(request: Request, context: Shop) -> None:
    context.quote_limit.hit(_client(request))


async def key_rate(request: Request, context: Shop) -> None:
    context.key_limit.hit(_client(request))


async def status_rate(request: Request, context: Shop) -> None:
    context.status_limit.hit(_client(request))


async def signin_rate(request: Request, context: Shop) -> None:
    context.signin_limit.hit(_client(request))


# ------------------------------------------------------------------ merchants

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, lower-case, without the scheme's default port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host.lower()}{shown}"


class CrossSiteRequestError(ForbiddenError):
    """A cookie-authenticated write that does not come from the shop's own pages."""


def check_origin(request: Request, settings: Settings) -> None:
    """Refuses a cookie-authenticated write that does not come from the shop's own pages.

    SameSite=Strict keeps the cookie from other sites, but not from sibling subdomains (same
    site), which can also post `text/plain` without a preflight. Browsers send `Origin` on every
    POST/PUT/PATCH/DELETE (the pages' Referrer-Policy is same-origin, so it is never "null" for
    them); `Referer` is the fallback. Neither, or another origin than `LIANDONG_PUBLIC_URL`'s: 403.
    """
    if request.method not in UNSAFE_METHODS:
        return
    sent = request.headers.get("origin") or request.headers.get("referer")
    expected = origin_of(settings.resolved_public_url)
    if sent is None or origin_of(sent) != expected:
        raise CrossSiteRequestError(
            f"cross-site request refused: a logged-in write must come from {expected}"
        )


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
    scopes: frozenset[str] = SCOPES
    """What the credentials may do: every scope for a dashboard session, an API token's own."""
    session: bool = True
    """A dashboard session (cookie), not an API token."""


def merchant(scope: str | None) -> Callable[..., MerchantIdentity]:
    """A dependency that lets in a dashboard session, or an API token holding `scope`; with
    `scope=None` a dashboard session only (an API token is refused with 403)."""

    def authenticate(
        request: Request,
        context: Shop,
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_token)],
        cookie: Annotated[str | None, Depends(_session_cookie)],
    ) -> MerchantIdentity:
        with context.session() as session:
            if token is not None:
                if scope is None:
                    if not token_scopes(session, token.credentials):
                        raise CredentialsError("unknown or revoked API token")
                    raise ScopeError("only a dashboard session (log in) may do this, not an API token")
                found = authenticate_api_token(session, token.credentials, scope)
                identity = MerchantIdentity(
                    _id(found), found.username, token_scopes(session, token.credentials), False
                )
            elif cookie:
                found = merchant_for_session(session, cookie)
                identity = MerchantIdentity(_id(found), found.username)
            else:
                raise CredentialsError("log in, or send an API token")
        if identity.session:
            check_origin(request, context.settings)
        return identity

    return authenticate


def _id(found: Merchant) -> int:
    assert found.id is not None
    return found.id


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
        raise BuyerAuthError("sign in with your wallet first")
    with context.session() as session:
        return buyer_address(session, credentials.credentials)


async def buyer_proof(
    context: Shop,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_buyer_session)],
    x_order_token: Annotated[
        str | None, Header(max_length=200, description="The secret token issued with the quote.")
    ] = None,
) -> BuyerProof:
    """On the event loop: an order token needs no lookup (the route checks it); only a wallet
    session is looked up, in a worker thread."""
    if x_order_token:
        return BuyerProof(order_token=x_order_token, wallet=None)
    if credentials is not None:
        wallet = await asyncio.to_thread(buyer_wallet, context, credentials)
        return BuyerProof(order_token=None, wallet=wallet)
    raise BuyerAuthError("send the order token (X-Order-Token) or a wallet session")
