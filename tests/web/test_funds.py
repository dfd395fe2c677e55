"""The dashboard's Funds panel in Chromium, on one shop with a delivered order: a stranger's wallet
on the wrong chain is asked to switch, then refused; the owner's wallet (dev account 0, which
deployed the escrow and is its owner and payout) withdraws the merchant balance and pauses payments,
signing in the browser; the chain shows the effect."""

# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from liandong.chain.quotes import NATIVE_COIN
from liandong.devtools.simulate import LocalShop, dev_account
from liandong.services.merchant_auth import create_merchant
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlmodel import Session
from web3 import Web3

from tests.web.conftest import BUYER_ACCOUNT, with_wallet
from tests.web.test_dashboard import DESKTOP, LOGIN, pay_through_the_api

pytestmark = pytest.mark.slow

NATIVE = Web3.to_checksum_address(NATIVE_COIN)
OTHER_CHAIN = 1
TX_HASH = r"(0x[0-9a-f]{64})"


def open_dashboard(
    context: BrowserContext, shop: LocalShop, account: str, start_on_chain: int | None = None
) -> Page:
    """The dashboard in a new tab of `context` with a wallet holding `account`; logs in unless the
    context already has the session."""
    page = with_wallet(context.new_page(), shop, account=account, start_on_chain=start_on_chain)
    page.goto(f"http://127.0.0.1:{shop.api_port}/merchant")
    login = page.get_by_role("button", name="Log in")
    expect(login.or_(page.get_by_role("heading", name="Merchant dashboard"))).to_be_visible()
    if login.is_visible():
        page.get_by_label("Username").fill(LOGIN[0])
        page.get_by_label("Password").fill(LOGIN[1])
        login.click()
    return page


def test_the_owner_withdraws_and_pauses_from_its_wallet_and_a_stranger_is_refused(
    shop_factory: Callable[..., LocalShop], browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    shop = shop_factory()
    product_id = shop.add_product("funds-card", ["FUND-000001"])
    with Session(shop.engine) as session:
        create_merchant(session, *LOGIN)
    shop.start()
    escrow = shop.w3.eth.contract(address=Web3.to_checksum_address(shop.record.escrow), abi=shop.record.abi)
    pay_through_the_api(shop, product_id)
    merchant = shop.wait_for(
        lambda: escrow.functions.merchantBalance(NATIVE).call(), 30, "the delivery recorded on-chain"
    )
    owner = escrow.functions.owner().call()
    assert owner == escrow.functions.payout().call() == dev_account(0).address
    context = browser.new_context(viewport=DESKTOP, locale="en-US")

    stranger = dev_account(BUYER_ACCOUNT).address
    page = open_dashboard(context, shop, stranger, start_on_chain=OTHER_CHAIN)
    message, account = page.locator("#funds-message"), page.locator("#funds-account")
    page.get_by_role("button", name="Connect the owner's wallet").click()
    expect(message).to_have_text(
        "Your wallet is on network Ethereum; the escrow is on network Local chain A: switch networks to sign."
    )
    page.get_by_role("button", name="Switch network").click()
    expect(account).to_have_text(f"Wallet {stranger}: neither the owner nor the payout address.")
    page.locator("#funds-books").get_by_role("button", name="Withdraw").click()
    expect(message).to_have_text(
        f"This wallet ({stranger}) is neither the escrow's owner ({owner}) nor its payout address "
        f"({owner}): only they may withdraw. Nothing was sent."
    )
    page.get_by_role("button", name="Pause payments").click()
    expect(message).to_have_text(
        f"This wallet ({stranger}) is not the escrow's owner ({owner}): only the owner may pause or "
        "resume payments. Nothing was sent."
    )
    assert "eth_sendTransaction" not in page.evaluate("window.__walletCalls")
    page.close()

    page = open_dashboard(context, shop, owner)
    message, account = page.locator("#funds-message"), page.locator("#funds-account")
    native = page.locator(f"#funds-books tr[data-token='{NATIVE}'] td")
    expect(native.nth(3)).to_have_text("0.001 ETH")  # the merchant balance, as the chain has it
    assert merchant == 10**15
    expect(page.locator("#operator-gas")).to_contain_text("ETH")
    expect(page.locator("#gas-warning")).to_be_hidden()
    native.get_by_role("button", name="Withdraw").click()
    expect(message).to_have_text(
        re.compile(
            rf"Withdrew 0\.001 ETH to {owner} in transaction {TX_HASH} \(block \d+\); "
            r"the merchant balance is now 0 ETH\."
        ),
        timeout=15_000,
    )
    expect(account).to_have_text(f"Wallet {owner}: owner, payout address.")
    expect(native.nth(3)).to_have_text("0 ETH")  # the panel read again after the transaction
    expect(native.nth(6)).to_have_text("")  # nothing left to withdraw
    hash_ = re.search(TX_HASH, message.inner_text())
    assert hash_ is not None
    receipt = shop.w3.eth.get_transaction_receipt(hash_.group(1))
    block = receipt["blockNumber"]
    assert len(shop.w3.eth.get_block(block)["transactions"]) == 1  # the payout sent nothing else there
    grown = shop.w3.eth.get_balance(owner, block) - shop.w3.eth.get_balance(owner, block - 1)
    assert grown + receipt["gasUsed"] * receipt["effectiveGasPrice"] == merchant  # the payout paid the gas
    assert escrow.functions.merchantBalance(NATIVE).call() == 0

    page.get_by_role("button", name="Pause payments").click()
    expect(message).to_have_text(re.compile(rf"Payments paused in transaction {TX_HASH} \(block \d+\)\."))
    expect(page.locator("#escrow-paused")).to_have_text("Paused")
    assert escrow.functions.paused().call() is True
    expect(page.get_by_role("button", name="Resume payments")).to_be_visible()
    expect(page.get_by_role("button", name="Pause payments")).to_be_hidden()
    screenshot(page, "dashboard-funds")

    page.get_by_role("button", name="中文").click()
    expect(page.get_by_role("heading", name="资金")).to_be_visible()
    expect(account).to_have_text(f"钱包 {owner}：所有者、收款地址。")
    page.get_by_role("button", name="恢复收款").click()
    expect(message).to_have_text(re.compile(rf"已恢复收款，交易 {TX_HASH}（区块 \d+）。"))
    assert escrow.functions.paused().call() is False
    context.close()
