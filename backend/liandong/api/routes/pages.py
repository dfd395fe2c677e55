"""The web pages: the storefront, the buyer's order page and the merchant dashboard.

Rendered here with Jinja2; the JavaScript they need (wallet payment, live status, key decryption,
the dashboard's charts) is in `liandong/web/static/`, beside ethers and Chart.js, which `toolchain/setup.sh`
copies from node_modules into `static/vendor/`. Every asset comes from the shop itself: no CDN, and
a Content-Security-Policy that allows nothing else.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlmodel import select

from liandong import web
from liandong.api.deps import Shop, ShopContext
from liandong.chain.profiles import load_profiles
from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.tokens import TokenInfo, token_info
from liandong.services import catalogue
from liandong.store.models import ProductPrice
from liandong.web.texts import TEXTS

WEB_DIR = Path(web.__file__).parent
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=WEB_DIR / "templates")
router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The pages handle card keys in the clear: scripts, styles and connections only from the shop."""
OrderId = Annotated[str, PathParam(pattern=r"^0x[0-9a-fA-F]{64}$")]

Tokens = dict[int, dict[str, TokenInfo]]
"""By chain id, by token: what the pages show amounts in."""


class PriceView(BaseModel):
    chain_id: int
    network: str
    token: str
    amount: str
    label: str


class ProductCard(BaseModel):
    id: int
    name: str
    description: str
    stock: catalogue.StockState
    prices: list[PriceView]


def static_files() -> StaticFiles:
    """The pages' scripts, styles and vendored libraries, mounted at /static."""
    return StaticFiles(directory=STATIC_DIR)


def format_units(amount: str, decimals: int | None) -> str:
    """Base units as a decimal number of whole tokens, exactly (uint256 has more digits than a float)."""
    if decimals is None:
        return amount
    whole, fraction = divmod(int(amount), 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{whole:,}.{digits}" if digits else f"{whole:,}"


def _known_tokens(context: ShopContext) -> Tokens:
    """On each of the shop's chains, every token a product is priced in and the native coin."""
    with context.session() as session:
        priced = session.exec(select(ProductPrice.chain_id, ProductPrice.token).distinct()).all()
    tokens: Tokens = {
        chain_id: {NATIVE_COIN: token_info(chain_id, None, NATIVE_COIN)} for chain_id in context.chains
    }
    for chain_id, token in sorted(priced):
        if chain_id in context.chains:
            tokens[chain_id][token] = token_info(chain_id, context.chains[chain_id].rpc_url, token)
    return tokens


def _card(product: catalogue.ListedProduct, context: ShopContext, tokens: Tokens) -> ProductCard:
    prices = []
    for price in product.prices:
        if price.chain_id not in tokens:  # a price on a chain this node no longer serves
            continue
        info = tokens[price.chain_id][price.token]
        label = f"{format_units(price.amount, info.decimals)} {info.symbol}"
        network = context.chains[price.chain_id].name
        prices.append(
            PriceView(
                chain_id=price.chain_id, network=network, token=price.token, amount=price.amount, label=label
            )
        )
    return ProductCard(
        id=product.id, name=product.name, description=product.description, stock=product.stock, prices=prices
    )


def chain_view(chain_id: int, node_rpc: str | None) -> dict[str, Any]:
    """What the pages say of the shop's chain, from its profile: its name (never a bare chain id),
    its block time (for the confirmations' ETA), its explorer's URL templates (`{hash}`, `{address}`)
    for the links to a payment and the escrow, what a wallet that does not know
    the network is asked to add (EIP-3085: the profile's public RPC URLs, or for a local chain the
    node's own, `node_rpc`), and every profiled network's name, for a wallet on another one. A
    chain without a profile is named by its id and cannot be added."""
    profiles = load_profiles()
    known = profiles.get(chain_id)
    names = {str(number): found.name for number, found in profiles.items()}
    if known is None:
        return {
            "id": chain_id,
            "name": f"#{chain_id}",
            "blockTime": None,
            "explorer": None,
            "add": None,
            "networks": names,
        }
    rpc_urls = list(known.wallet_rpc) or ([node_rpc] if known.local and node_rpc else [])
    explorer = known.explorer
    add = {
        "chainId": hex(chain_id),
        "chainName": known.name,
        "nativeCurrency": {
            "name": known.native.symbol,
            "symbol": known.native.symbol,
            "decimals": known.native.decimals,
        },
        "rpcUrls": rpc_urls,
        "blockExplorerUrls": [_origin(explorer.address)] if explorer is not None else [],
    }
    return {
        "id": chain_id,
        "name": known.name,
        "blockTime": known.block_time,
        "explorer": explorer.model_dump() if explorer is not None else None,
        "add": add if rpc_urls else None,
        "networks": names,
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _page(
    request: Request,
    template: str,
    context: ShopContext,
    tokens: Tokens,
    products: list[ProductCard] | None = None,
    order_id: str | None = None,
) -> HTMLResponse:
    """Renders a page with what its scripts need (the chains with their escrows and tokens, both
    languages' texts) in a JSON block, so that no script has to be inline. `chainId`, `chain`,
    `escrow` and `tokens` are the shop's first chain's; `chains` has every one, first first."""
    first = context.default_chain

    def chain_data(chain_id: int) -> dict[str, Any]:
        access = context.chains[chain_id]
        return {
            **chain_view(chain_id, access.rpc_url),
            "escrow": access.domain.verifying_contract,
            "tokens": {token: info.model_dump() for token, info in tokens[chain_id].items()},
        }

    data = {
        "chainId": first,
        "chain": chain_view(first, context.chains[first].rpc_url),
        "escrow": context.chains[first].domain.verifying_contract,
        "tokens": {token: info.model_dump() for token, info in tokens[first].items()},
        "chains": [chain_data(chain_id) for chain_id in context.chains],
        "texts": TEXTS,
        "orderId": order_id,
    }
    view = {"t": TEXTS["en"], "page_data": data, "products": products or [], "order_id": order_id}
    response = templates.TemplateResponse(request, template, view)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "same-origin"  # writes carry Origin (checked), never to others
    return response


@router.get("/", response_class=HTMLResponse)
def storefront(request: Request, context: Shop) -> HTMLResponse:
    tokens = _known_tokens(context)
    with context.session() as session:
        products = [_card(product, context, tokens) for product in catalogue.storefront(session)]
    return _page(request, "shop.html", context, tokens, products=products)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_page(request: Request, order_id: OrderId, context: Shop) -> HTMLResponse:
    """The buyer's page for one order: anyone may load it, only the order token or the paying
    wallet opens the order itself (through the API)."""
    return _page(request, "order.html", context, _known_tokens(context), order_id=order_id.lower())


@router.get("/merchant", response_class=HTMLResponse)
def dashboard(request: Request, context: Shop) -> HTMLResponse:
    """The merchant dashboard; its data comes from the API, behind the login."""
    return _page(request, "dashboard.html", context, _known_tokens(context))
