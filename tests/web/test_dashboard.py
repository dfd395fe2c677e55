"""The merchant dashboard in Chromium: log in, import keys with progress, watch an order arrive
live in the feed with the stock following it, and the efficiency board's and sales charts drawn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.devtools.simulate import LocalShop
from liandong.services.merchant_auth import create_merchant
from liandong.store.models import ShopOrder
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session, select

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 900}
LOGIN = ("owner", "a long enough password")
IMPORTED_KEYS = 200_000
"""Enough for the import to outlast the API's 2 s answer: a job whose progress the page polls."""
WATCH_PROGRESS = """result => {
  const bar = document.getElementById("import-progress");
  window.__progressSeen = [];
  new MutationObserver(() => window.__progressSeen.push([result.dataset.state, bar.value, bar.max]))
    .observe(result, { childList: true, characterData: true, subtree: true });
}"""
CHARTS = ("latency-chart", "orders-chart", "revenue-chart", "products-chart", "tokens-chart")


def pay_through_the_api(shop: LocalShop, product_id: int) -> str:
    """A buyer elsewhere: quote over the API, pay from a dev account; returns the order id."""
    api = httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)
    issued = api.post(
        "/api/quotes", json={"product_id": product_id, "token": NATIVE_COIN, "open": True}
    ).json()
    shop.buyer(5).pay(Quote.from_json(issued["quote"]), bytes.fromhex(issued["signature"][2:]))
    order: str = issued["order"]
    return order


def stock_row(page: Page, name: str) -> list[str]:
    return page.locator("#stock tbody tr", has_text=name).locator("td").all_inner_texts()


def test_log_in_import_keys_see_an_order_arrive_live_and_the_charts(
    shop_factory: Callable[..., LocalShop],
    browser: Browser,
    screenshot: Callable[[Page, str], Path],
    tmp_path: Path,
) -> None:
    shop = shop_factory()
    product_id = shop.add_product("dash-card", ["DASH-000001"])
    with Session(shop.engine) as session:
        create_merchant(session, *LOGIN)
    shop.start()
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{shop.api_port}/merchant")

    page.get_by_label("Username").fill(LOGIN[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-message")).to_have_text("Wrong username or password.")
    page.get_by_label("Password").fill(LOGIN[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Merchant dashboard")).to_be_visible()
    expect(page.locator("#feed-state")).to_have_text("● Live")

    keys = tmp_path / "keys.txt"
    # DASH-000001 is in stock already and DASH-000002 is twice in the file: both are skipped.
    keys.write_text("\n".join(f"DASH-{n:06d}" for n in range(IMPORTED_KEYS)) + "\nDASH-000002\n")
    page.locator("#import-product").select_option(label="dash-card (dash-card)")
    page.get_by_label("File").set_input_files(keys)
    result = page.locator("#import-result")
    result.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(result).to_have_text(f"Imported {IMPORTED_KEYS - 1} keys (2 duplicates skipped).", timeout=120_000)
    seen = page.evaluate("window.__progressSeen")
    jobs = [(done, total) for state, done, total in seen if state == "running" and total == IMPORTED_KEYS - 1]
    assert jobs, seen  # answered 202: the page showed the job's progress while it polled
    assert seen[-1] == ["done", IMPORTED_KEYS - 1, IMPORTED_KEYS - 1]
    expect(page.locator("#stock tbody tr", has_text="dash-card").locator("td").nth(1)).to_have_text(
        str(IMPORTED_KEYS)
    )  # 1 key before, the import's stock delta came over the feed

    order = pay_through_the_api(shop, product_id)
    row = page.locator("#orders tbody tr", has=page.locator(f"code[title='{order}']"))
    expect(row).to_contain_text("Delivered", timeout=30_000)
    row.get_by_role("button", name="Resend notice").click()  # in-site only: the buyer's page is closed
    expect(page.locator("#orders-message")).to_have_text(f"Notice for {order[:10]}… sent again: in-site ✗")
    assert stock_row(page, "dash-card")[1:4] == [str(IMPORTED_KEYS - 1), "1", str(IMPORTED_KEYS)]

    expect(page.locator("#delivered-count")).to_have_text("1", timeout=10_000)  # the board refreshed
    drawn = page.evaluate(
        "ids => ids.map((id) => Chart.getChart(document.getElementById(id))?.data.datasets[0].data"
        ".reduce((sum, n) => sum + n, 0))",
        list(CHARTS),
    )
    assert drawn == [1, 1, pytest.approx(0.001), 1, 1]  # latency, orders, revenue (ETH), product, token
    with Session(shop.engine) as session:  # as a reorg after the keys went out leaves it
        flagged = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == order)).one()
        flagged.anomaly = "payment reorged"
        session.add(flagged)
        session.commit()
    page.locator("#window").select_option("168")  # the figures are read again, alerts with them
    alerts = page.locator("#shop-alerts")
    expect(alerts).to_have_text(
        "1 orders need a look (payment reorged, settlement refused): see the abnormal log."
    )
    screenshot(page, "dashboard")

    page.get_by_role("button", name="中文").click()
    expect(page.get_by_role("heading", name="商家后台")).to_be_visible()
    expect(row).to_contain_text("已发货")
    expect(alerts).to_contain_text("1 笔订单异常")
    screenshot(page, "dashboard-zh")
    context.close()


def test_a_shop_on_two_chains_breaks_its_figures_down_by_network(
    shop_factory: Callable[..., LocalShop], browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    shop = shop_factory(more_chains=[(31339, None)])
    product_id = shop.add_product("two-chain card", ["TWO-1", "TWO-2"])
    with Session(shop.engine) as session:
        create_merchant(session, *LOGIN)
    shop.start()
    on_b = shop.quote(product_id, chain_id=31339)
    shop.buyer(5, 31339).pay(on_b.quote, on_b.signature)
    order = on_b.order.chain_order_id
    shop.wait_for(lambda: shop.order(order).status.value == "delivered", 30, "the delivery on chain B")

    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{shop.api_port}/merchant")
    page.get_by_label("Username").fill(LOGIN[0])
    page.get_by_label("Password").fill(LOGIN[1])
    page.get_by_role("button", name="Log in").click()

    board = page.locator("#chains-efficiency tbody tr")
    expect(board).to_have_count(2)  # every chain the shop serves, chain A without deliveries too
    expect(board.nth(0).locator("td").nth(5)).to_have_text("0")
    expect(board.nth(1).locator("td").first).to_have_text("Local chain B")
    expect(board.nth(1).locator("td").nth(5)).to_have_text("1")
    expect(page.locator("#tokens tbody tr")).to_have_count(1)
    expect(page.locator("#tokens tbody tr").first).to_contain_text("Local chain B")
    sales = page.locator("#chains-sales tbody tr")
    expect(sales.nth(0).locator("td")).to_have_text(["Local chain A", "0", "0"])
    expect(sales.nth(1).locator("td")).to_have_text(["Local chain B", "1", "1"])
    row = page.locator("#orders tbody tr", has=page.locator(f"code[title='{order}']"))
    expect(row).to_contain_text("Local chain B")
    labels = page.evaluate("Chart.getChart(document.getElementById('revenue-chart')).data.datasets[0].label")
    assert labels == "ETH (Local chain B)"

    funds = page.locator("#funds-escrow")
    expect(funds).to_contain_text(shop.record.escrow)  # the first chain's, until another is picked
    expect(page.locator("#funds-network")).to_be_visible()
    page.locator("#funds-chain").select_option(label="Local chain B")
    expect(funds).to_contain_text(shop.chain(31339).record.escrow)
    expect(funds).to_contain_text("Local chain B")
    screenshot(page, "dashboard-two-chains")
    context.close()
