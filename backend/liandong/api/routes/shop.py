"""The buyer's API: catalogue, quotes, orders and their keys, wallet sign-in, live order events.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import asyncio
import contextlib
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from liandong.api.deps import (
    WS_POLICY_VIOLATION,
    BuyerProof,
    Shop,
    ShopContext,
    buyer_proof,
    buyer_wallet,
    key_rate,
    quote_rate,
    signin_rate,
    socket_slot,
    status_rate,
    stream_events,
    ws_shop,
)
from liandong.events import KeyRecipient
from liandong.services import buyer_auth, buyer_keys, catalogue
from liandong.services.orders import QuoteAsk
from liandong.store.models import MAX_ROW_ID, ShopOrder
from liandong.vault.transport import SealedKeys, TransportKeyError, parse_public_key

router = APIRouter(prefix="/api", tags=["buyers"])

MAX_PUBLIC_KEY_TEXT = 100
"""The longest public key text taken (32 bytes as 0x-hex are 66 characters)."""
WS_REASON_CHARS = 120
"""A close frame's reason holds at most 123 bytes."""

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x" + "ab" * 20])]
OrderId = Annotated[
    str, Path(pattern=r"^0x[0-9a-fA-F]{64}$", description="The escrow's order id (bytes32, 0x-hex).")
]


class ChainInfo(BaseModel):
    chain_id: int
    network: str = Field(description="The network's name, as its profile gives it.")
    escrow: str


class ShopInfo(BaseModel):
    chain_id: int = Field(description="The shop's first chain: quotes that name none are for it.")
    escrow: str
    chains: list[ChainInfo] = Field(description="Every chain the shop takes payments on.")
    name: str = "链动小铺 Liandong"


class QuoteRequest(BaseModel):
    chain_id: int | None = Field(
        default=None, ge=1, description="The chain to pay on (see `GET /api/shop`); unset: the shop's first."
    )
    product_id: int = Field(ge=1, le=MAX_ROW_ID)
    quantity: int = Field(default=1, ge=1, le=100)
    token: Address
    buyer: Address | None = Field(
        default=None,
        description="The wallet that will pay: only it can use the quote. Required unless `open` is true.",
    )
    open: bool = Field(
        default=False,
        description="An open quote, which any wallet may pay (for integrators); `buyer` must then be absent.",
    )
    email: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="For the e-mail delivery channel.",
    )
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, for SMS.")


class QuoteTerms(BaseModel):
    """The escrow's `Quote` struct, as the wallet passes it to `pay` (`Quote.to_json`'s form)."""

    orderId: str  # noqa: N815  (the contract's field names)
    productId: int  # noqa: N815
    quantity: int
    token: str
    amount: str
    buyer: str
    expiry: int
    deliveryDeadline: int  # noqa: N815


class QuoteResponse(BaseModel):
    order: str
    access_token: str = Field(description="Opens the order's keys: keep it secret; shown only once.")
    quote: QuoteTerms
    signature: str
    escrow: str
    chain_id: int
    expires_at: int
    order_url: str


class ChallengeRequest(BaseModel):
    address: Address


class ChallengeResponse(BaseModel):
    message: str = Field(description="The EIP-4361 message for the wallet to sign (personal_sign).")
    nonce: str
    expires_at: datetime


class SignInRequest(BaseModel):
    message: str = Field(max_length=2000)
    signature: str = Field(max_length=200)


class SignInResponse(BaseModel):
    token: str
    address: str
    expires_at: datetime


class KeysRequest(BaseModel):
    public_key: str = Field(
        max_length=MAX_PUBLIC_KEY_TEXT,
        description="The browser's X25519 public key (32 bytes, base64url or 0x-hex).",
    )


@router.get("/shop")
def shop_info(context: Shop) -> ShopInfo:
    """What a wallet needs to know to pay this shop."""
    chains = [
        ChainInfo(chain_id=chain_id, network=chain.name, escrow=chain.domain.verifying_contract)
        for chain_id, chain in context.chains.items()
    ]
    return ShopInfo(chain_id=context.domain.chain_id, escrow=context.domain.verifying_contract, chains=chains)


@router.get("/products")
def products(context: Shop) -> list[catalogue.ListedProduct]:
    with context.session() as session:
        return catalogue.storefront(session)


@router.post(
    "/quotes",
    status_code=201,
    dependencies=[Depends(quote_rate)],
    responses={
        404: {"description": "Not for sale"},
        409: {"description": "Sold out"},
        422: {"description": "No buyer named, and no open quote asked for"},
    },
)
async def quote(request: QuoteRequest, context: Shop) -> QuoteResponse:
    """Prices and signs an order: the wallet calls the escrow's `pay(quote, signature)` with it.
    Answered once the order's row is committed (with the quotes asked for at the same time)."""
    chain_id = context.default_chain if request.chain_id is None else request.chain_id
    issued = await context.quotes(
        QuoteAsk(
            chain_id=chain_id,
            product_id=request.product_id,
            quantity=request.quantity,
            token=request.token.lower(),
            buyer=request.buyer,
            email=request.email,
            phone=request.phone,
            delivery_window=context.settings.delivery_window_seconds,
            open_quote=request.open,
        )
    )
    terms = issued.quote
    return QuoteResponse(
        order=issued.order.chain_order_id,
        access_token=issued.access_token,
        quote=QuoteTerms.model_validate(terms.to_json()),
        signature="0x" + issued.signature.hex(),
        escrow=context.chains[chain_id].domain.verifying_contract,
        chain_id=chain_id,
        expires_at=terms.expiry,
        order_url=f"{context.settings.resolved_public_url}/orders/{issued.order.chain_order_id}",
    )


def _open(context: Shop, order_id: str, proof: BuyerProof) -> ShopOrder:
    with context.session() as session:
        if proof.order_token is not None:
            return buyer_keys.order_for_token(session, order_id, proof.order_token)
        assert proof.wallet is not None
        return buyer_keys.order_for_wallet(session, order_id, proof.wallet)


@router.get("/orders/{order_id}", dependencies=[Depends(status_rate)], responses={404: {}})
def order_status(
    order_id: OrderId, context: Shop, proof: Annotated[BuyerProof, Depends(buyer_proof)]
) -> buyer_keys.OrderState:
    """The order's state; the keys themselves come sealed from `POST …/keys`."""
    return buyer_keys.order_state(_open(context, order_id, proof))


@router.post(
    "/orders/{order_id}/keys",
    dependencies=[Depends(key_rate)],
    responses={404: {}, 409: {"description": "Not delivered (yet)"}, 422: {}},
)
async def order_keys(
    order_id: OrderId,
    request: KeysRequest,
    context: Shop,
    proof: Annotated[BuyerProof, Depends(buyer_proof)],
) -> SealedKeys:
    """The order's keys sealed to the browser's X25519 public key, with the salt that recomputes
    the on-chain commitment. Answered once the read is logged (with the reads asked at the same time)."""
    return await context.keys(
        buyer_keys.KeyRead(order_id, request.public_key, proof.order_token, proof.wallet)
    )


@router.post("/buyer/challenge", dependencies=[Depends(signin_rate)])
def challenge(request: ChallengeRequest, context: Shop) -> ChallengeResponse:
    """A Sign-In with Ethereum message for the wallet to sign; valid once, for a few minutes."""
    with context.session() as session:
        issued = buyer_auth.issue_challenge(
            session,
            domain=context.settings.public_host,
            uri=context.settings.resolved_public_url,
            chain_id=context.domain.chain_id,
            address=request.address,
        )
    return ChallengeResponse(message=issued.message, nonce=issued.nonce, expires_at=issued.expires_at)


@router.post("/buyer/session", dependencies=[Depends(signin_rate)], responses={401: {}})
def sign_in(request: SignInRequest, context: Shop) -> SignInResponse:
    """Exchanges the signed challenge for a wallet session that opens every order the wallet paid."""
    with context.session() as session:
        login = buyer_auth.sign_in(
            session,
            request.message,
            request.signature,
            domain=context.settings.public_host,
            chain_id=context.domain.chain_id,
            session_hours=context.settings.buyer_session_hours,
        )
    return SignInResponse(token=login.token, address=login.address, expires_at=login.expires_at)


@router.get("/buyer/orders", dependencies=[Depends(status_rate)])
def wallet_orders(
    context: Shop, wallet: Annotated[str, Depends(buyer_wallet)]
) -> list[buyer_keys.OrderState]:
    """Every order the signed-in wallet paid, newest first."""
    with context.session() as session:
        return buyer_keys.wallet_orders(session, wallet)


ORDER_ID = re.compile(r"0x[0-9a-fA-F]{64}", re.ASCII)


def _ws_proof(context: ShopContext, message: Any) -> BuyerProof | None:
    """The proof in an order page's first message: `{"type": "auth", "token": …}` (the order
    token) or `{"type": "auth", "session": …}` (a wallet session); None if it is neither."""
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token, session_token = message.get("token"), message.get("session")
    if isinstance(token, str) and 0 < len(token) <= 200:
        return BuyerProof(order_token=token, wallet=None)
    if isinstance(session_token, str) and 0 < len(session_token) <= 200:
        with context.session() as session:
            try:
                return BuyerProof(order_token=None, wallet=buyer_auth.buyer_address(session, session_token))
            except buyer_auth.BuyerAuthError:
                return None
    return None


def _opens(context: ShopContext, order_id: str, message: Any) -> BuyerProof | None:
    """The proof in the page's first message if it opens the order; None otherwise."""
    proof = _ws_proof(context, message)
    if proof is None:
        return None
    try:
        _open(context, order_id, proof)
    except buyer_keys.OrderAccessDeniedError:
        return None
    return proof


def _recipient(message: dict[str, Any], proof: BuyerProof) -> KeyRecipient | None:
    """The page's X25519 public key from its first message (`"public_key"`, written as `POST
    …/keys` takes it), to seal the keys to at their delivery; None if it sent none.
    `TransportKeyError` for one that is not a usable key."""
    text = message.get("public_key")
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > MAX_PUBLIC_KEY_TEXT:
        raise TransportKeyError(f"public_key must be a string of at most {MAX_PUBLIC_KEY_TEXT} characters")
    return KeyRecipient(parse_public_key(text), buyer_keys.read_via(proof.order_token))


def _keys_read(context: ShopContext, order_id: str) -> bool:
    with context.session() as session:
        return buyer_keys.keys_were_read(session, order_id)


@router.websocket("/orders/{order_id}/events")
async def order_events(websocket: WebSocket, order_id: str) -> None:
    """Pushes the order's status changes (paid, confirmations n/N, delivered); never its keys in
    the clear.

    The first message must prove the order, as the HTTP routes do: `{"type": "auth", "token":
    "<order token>"}` or `{"type": "auth", "session": "<wallet session>"}`; anything else (or
    nothing within `LIANDONG_WS_AUTH_SECONDS`) closes the socket (1008) before it hears anything.
    It may also carry the page's X25519 `"public_key"` (as `POST …/keys` takes it; an unusable one
    closes the socket, 1008): the `delivered` event then brings the keys sealed to it, as `keys`
    (the answer `POST …/keys` gives, the read logged with the delivery), so the page opens them at
    once. A page that subscribed after the delivery, or on another node of a cluster, gets the
    event alone and asks `POST …/keys`.
    After the keys are opened the page sends `{"type": "ack"}`: only that makes the in-site
    delivery channel count the order as delivered."""
    context = ws_shop(websocket)
    if not ORDER_ID.fullmatch(order_id):
        await websocket.close(code=WS_POLICY_VIOLATION, reason="not an order id (0x and 64 hex digits)")
        return
    order_id = order_id.lower()
    async with socket_slot(websocket, context) as admitted:
        if not admitted:
            return
        await websocket.accept()
        try:
            async with asyncio.timeout(context.settings.ws_auth_seconds):
                first = await websocket.receive_json()
        except (TimeoutError, ValueError, WebSocketDisconnect):
            first = None
        proof = await asyncio.to_thread(_opens, context, order_id, first)
        refusal = "send the order token or a wallet session first"
        recipient = None
        if proof is not None:
            assert isinstance(first, dict)  # a proof came in it
            try:
                recipient = _recipient(first, proof)
            except TransportKeyError as bad:
                proof, refusal = None, f"public_key: {bad}"[:WS_REASON_CHARS]
        if proof is None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=WS_POLICY_VIOLATION, reason=refusal)
            return
        hub = context.hub
        queue = hub.subscribe(order_id, recipient)
        await websocket.send_json({"type": "ready", "order": order_id})

        async def acknowledged(message: Any) -> None:
            is_ack = isinstance(message, dict) and message.get("type") == "ack"
            if is_ack and await asyncio.to_thread(_keys_read, context, order_id):
                hub.acknowledge(order_id)

        await stream_events(websocket, queue, lambda: hub.unsubscribe(order_id, queue), acknowledged)
