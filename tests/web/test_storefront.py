"""The buyer's pages in Chromium: buy on the storefront, pay from the wallet (native coin; ERC-20 by
approve + pay and by permit), watch the order page go paid → confirmations → delivered live, read
the keys decrypted in the page and see them verified against the escrow's on-chain record; in a shop
on two chains, choose the network and pay on it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from liandong.devtools.simulate import LocalShop
from liandong.store.models import Payment, ProductPrice, ShopOrder
from liandong.web.texts import TEXTS
from playwright.sync_api import Browser, Page, ViewportSize, expect
from sqlmodel import Session, select

from tests.web.conftest import with_wallet

pytestmark = pytest.mark.slow

PHONE: ViewportSize = {"width": 390, "height": 844}
CHAIN_TIMEOUT = 30_000  # ms: a payment, its confirmation and the on-chain record of the delivery
NATIVE_KEYS = ["KEY-WEB-0001", "KEY-WEB-0002"]


def shop_url(shop: LocalShop, path: str = "/") -> str:
    return f"http://127.0.0.1:{shop.api_port}{path}"


def buy(page: Page, product: str, token_label: str | None = None, quantity: int = 1) -> None:
    """From the storefront to the order page of a new order."""
    card = page.locator("li.product", has_text=product)
    if token_label is not None:
        card.get_by_label("Price").select_option(label=token_label)
    card.get_by_label("Quantity").fill(str(quantity))
    card.get_by_role("button", name="Buy").click()
    page.wait_for_url("**/orders/0x*")


def keys_shown(page: Page) -> list[str]:
    return page.locator("#keys code").all_inner_texts()


def test_buy_with_the_native_coin_watch_it_live_and_read_verified_keys(
    shop_factory: Callable[..., LocalShop], browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    shop = shop_factory(confirmations=1)
    shop.add_product("web-game-key", NATIVE_KEYS)
    shop.start()
    context = browser.new_context(viewport=PHONE, locale="en-US")
    page = with_wallet(
        context.new_page(), shop, start_on_chain=1, reject_once=("eth_sendTransaction",), known_chains=(1,)
    )
    page.goto(shop_url(shop))
    card = page.locator("li.product", has_text="web-game-key")
    expect(card.get_by_label("Price")).to_have_text("0.001 ETH")
    expect(card.locator(".badge")).to_have_text("In stock")
    screenshot(page, "storefront-phone")

    buy(page, "web-game-key", quantity=2)
    expect(page.locator("#summary-amount")).to_have_text("0.002 ETH")
    pay = page.get_by_role("button", name="Pay with wallet")
    pay.click()  # the wallet is on mainnet: the page says so and offers to switch
    problem = page.locator("#problem")
    expect(problem).to_contain_text("on network Ethereum; this shop takes payments on network Local chain A")
    problem.get_by_role("button", name="Switch network").click()  # …then pays: the buyer rejects it
    expect(problem).to_contain_text("You rejected the request in your wallet")
    [added] = page.evaluate("window.__addedChains")  # the wallet did not know the network: added first
    assert added == {
        "chainId": hex(shop.record.chain_id),
        "chainName": "Local chain A",
        "nativeCurrency": {"name": "ETH", "symbol": "ETH", "decimals": 18},
        "rpcUrls": [shop.anvil.http_url],  # a local chain: the node's own
        "blockExplorerUrls": [],
    }
    pay.click()

    expect(page.locator("#status")).to_have_text(
        "Payment seen on-chain; waiting for confirmations.", timeout=CHAIN_TIMEOUT
    )
    expect(page.locator("li[data-step=paid]")).to_have_class("done")
    expect(page.locator("#summary-network")).to_have_text("Local chain A")
    expect(page.locator("#confirmations")).to_have_text("0 of 1, about 1 s")  # 1 s blocks (its profile)
    key_requests: list[str] = []
    page.on("request", lambda r: key_requests.append(r.url) if r.url.endswith("/keys") else None)
    shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # the one confirmation
    expect(page.locator("#status")).to_have_text("Delivered: your keys are below.", timeout=CHAIN_TIMEOUT)
    expect(page.locator("#keys code")).to_have_count(2)
    assert sorted(keys_shown(page)) == NATIVE_KEYS
    assert key_requests == []  # the keys came sealed to the page with the delivered event
    verdict = page.locator("#verify-result")
    expect(verdict).to_have_text(
        "Verified: the escrow's record of this delivery matches these keys.", timeout=CHAIN_TIMEOUT
    )
    screenshot(page, "order-page-phone")

    page.reload()  # the order token stays in the browser: the keys open again, asked for this time
    expect(page.locator("#keys code")).to_have_count(2, timeout=CHAIN_TIMEOUT)
    assert len(key_requests) == 1
    page.get_by_role("button", name="中文").click()
    expect(page.locator("#status")).to_have_text(TEXTS["zh"]["status_delivered"])
    # This test's wallet starts on mainnet with every page load: the chain check asks to switch.
    expect(problem).to_contain_text("您的钱包当前在网络 Ethereum")
    problem.get_by_role("button", name="切换网络").click()
    expect(verdict).to_have_text(TEXTS["zh"]["verify_ok"], timeout=CHAIN_TIMEOUT)
    page.get_by_role("button", name="English").click()

    page.evaluate("localStorage.clear(); sessionStorage.clear()")
    page.reload()  # no token any more: Sign-In with Ethereum opens the order for the wallet that paid
    page.get_by_role("button", name="Sign in with wallet").click()
    expect(page.locator("#keys code")).to_have_count(2, timeout=CHAIN_TIMEOUT)
    assert sorted(keys_shown(page)) == NATIVE_KEYS
    context.close()


def _dusd_product(shop: LocalShop, sku: str, keys: list[str], price: int) -> None:
    """A product priced in the demo token (DUSD, EIP-2612) as well as in the native coin."""
    product_id = shop.add_product(sku, keys)
    with Session(shop.engine) as session:
        session.add(
            ProductPrice(
                product_id=product_id,
                chain_id=shop.record.chain_id,
                token=shop.record.tokens["DUSD"].lower(),
                amount=str(price),
            )
        )
        session.commit()


def _pay_in_dusd(browser: Browser, shop: LocalShop, sku: str, *, typed_data: bool) -> tuple[list[str], Any]:
    context = browser.new_context(viewport=PHONE, locale="en-US")
    page = with_wallet(context.new_page(), shop, typed_data=typed_data)
    page.goto(shop_url(shop))
    buy(page, sku, token_label="5 DUSD")
    expect(page.locator("#summary-amount")).to_have_text("5 DUSD")
    page.get_by_role("button", name="Pay with wallet").click()
    expect(page.locator("#status")).to_have_text("Delivered: your keys are below.", timeout=CHAIN_TIMEOUT)
    expect(page.locator("#verify-result")).to_contain_text("Verified", timeout=CHAIN_TIMEOUT)
    keys, calls = keys_shown(page), page.evaluate("window.__walletCalls")
    context.close()
    return keys, calls


def test_pay_in_an_erc20_token_by_approve_then_pay_and_by_permit(
    shop_factory: Callable[..., LocalShop], browser: Browser
) -> None:
    shop = shop_factory()
    _dusd_product(shop, "dusd-card", ["DUSD-CARD-1", "DUSD-CARD-2"], price=5 * 10**6)
    shop.start()

    keys, calls = _pay_in_dusd(browser, shop, "dusd-card", typed_data=False)  # a wallet without typed data
    assert calls.count("eth_sendTransaction") == 2  # approve, then pay
    first = keys

    keys, calls = _pay_in_dusd(browser, shop, "dusd-card", typed_data=True)
    assert "eth_signTypedData_v4" in calls  # the approval above was spent: a permit, then one transaction
    assert calls.count("eth_sendTransaction") == 1
    assert sorted(first + keys) == ["DUSD-CARD-1", "DUSD-CARD-2"]


def test_too_little_balance_and_an_expired_quote_are_explained(
    shop_factory: Callable[..., LocalShop], browser: Browser
) -> None:
    shop = shop_factory()
    shop.add_product("web-expiring", ["EXP-1"])
    shop.start()
    context = browser.new_context(viewport=PHONE, locale="en-US")
    page = with_wallet(context.new_page(), shop, account=Account.create().address)  # an empty wallet
    page.goto(shop_url(shop))
    buy(page, "web-expiring")
    page.get_by_role("button", name="Pay with wallet").click()
    expect(page.locator("#problem")).to_have_text(
        re.compile(r"Too little balance: the wallet holds 0 ETH, the order costs 0\.001 ETH")
    )

    page = with_wallet(context.new_page(), shop)
    page.goto(shop_url(shop))
    buy(page, "web-expiring")
    # The chain moves past the quote's expiry while the page still thinks it valid: the escrow's
    # QuoteExpired revert, met in the trial call, is what the buyer is told about.
    shop.w3.provider.make_request("evm_increaseTime", [16 * 60])  # type: ignore[arg-type]
    shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    page.get_by_role("button", name="Pay with wallet").click()
    problem = page.locator("#problem")
    expect(problem).to_contain_text("This price has expired: buy again for a fresh one. Nothing was paid.")
    expect(problem.get_by_role("link", name="Buy again")).to_have_attribute(
        "href", re.compile(r"/#product-\d+$")
    )
    assert "eth_sendTransaction" not in page.evaluate("window.__walletCalls")
    context.close()

    chinese = browser.new_context(viewport=PHONE, locale="zh-CN")  # navigator.language picks the texts
    page = chinese.new_page()
    page.goto(shop_url(shop))
    expect(page.get_by_role("heading", level=1)).to_have_text(TEXTS["zh"]["products_title"])
    expect(page).to_have_title(TEXTS["zh"]["shop_title"])
    chinese.close()


def test_choose_the_second_network_of_a_shop_on_two_and_pay_on_it(
    shop_factory: Callable[..., LocalShop], browser: Browser
) -> None:
    shop = shop_factory(more_chains=[(31339, None)])
    shop.add_product("two-chain-key", ["KEY-B-1"])
    shop.start()
    second = shop.chain(31339)
    context = browser.new_context(viewport=PHONE, locale="en-US")
    page = with_wallet(context.new_page(), shop, known_chains=(shop.record.chain_id,), keeps_chain=True)
    page.goto(shop_url(shop))
    card = page.locator("li.product", has_text="two-chain-key")
    network = card.get_by_label("Network")
    expect(network.locator("option")).to_have_text(["Local chain A", "Local chain B"])
    network.select_option(label="Local chain B")
    card.get_by_role("button", name="Buy").click()
    page.wait_for_url("**/orders/0x*")
    [added] = page.evaluate("window.__addedChains")  # the wallet knew only chain A: B added, then switched to
    assert (added["chainName"], added["rpcUrls"]) == ("Local chain B", [second.anvil.http_url])
    expect(page.locator("#summary-network")).to_have_text("Local chain B")

    page.get_by_role("button", name="Pay with wallet").click()
    expect(page.locator("#status")).to_have_text("Delivered: your keys are below.", timeout=CHAIN_TIMEOUT)
    assert keys_shown(page) == ["KEY-B-1"]
    expect(page.locator("#verify-result")).to_contain_text("Verified", timeout=CHAIN_TIMEOUT)
    context.close()
    order_id = page.url.rsplit("/", 1)[1]
    with Session(shop.engine) as session:
        order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == order_id)).one()
        payment = session.exec(select(Payment).where(Payment.chain_order_id == order_id)).one()
    assert (order.chain_id, payment.chain_id) == (31339, 31339)
    paid = second.w3.eth.get_transaction(payment.tx_hash)  # type: ignore[arg-type]
    assert str(paid["to"]).lower() == second.record.escrow.lower()
