"""The web pages in a real browser: Debian's Chromium driven by Playwright, against whole shops on
anvil (`shop_factory`). The buyer's wallet is an EIP-1193 provider injected into the page that
forwards to the anvil of the chain it is on, whose dev accounts are unlocked (it signs and sends as
a wallet would)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liandong.devtools.simulate import LocalShop
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
BUYER_ACCOUNT = 4
"""A dev account of its own (0 is the shop's operator)."""

WALLET = """
(() => {
  const config = %s;
  const rejectOnce = new Set(config.rejectOnce);
  const kept = config.keepsChain ? JSON.parse(sessionStorage.getItem("test-wallet")) : null;
  let chainId = kept?.chainId ?? config.startChainId;
  const knownChains = kept?.known ?? config.knownChains;
  const known = knownChains ? new Set(knownChains) : null; // null: every chain
  window.__addedChains = kept?.added ?? [];
  const keep = () => {
    const state = { chainId, known: known && [...known], added: window.__addedChains };
    if (config.keepsChain) sessionStorage.setItem("test-wallet", JSON.stringify(state));
  };
  const failure = (code, message, data) => Object.assign(new Error(message), { code, data });
  window.__walletCalls = [];
  window.ethereum = {
    on() {},
    removeListener() {},
    async request({ method, params = [] }) {
      window.__walletCalls.push(method);
      if (rejectOnce.delete(method)) throw failure(4001, "User rejected the request.");
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [config.account];
      if (method === "eth_chainId") return chainId;
      if (method === "wallet_switchEthereumChain") {
        if (known && !known.has(params[0].chainId)) throw failure(4902, "Unrecognized chain ID");
        chainId = params[0].chainId;
        keep();
        return null;
      }
      if (method === "wallet_addEthereumChain") {
        window.__addedChains.push(params[0]);
        known?.add(params[0].chainId);
        keep();
        return null;
      }
      if (method === "eth_signTypedData_v4" && !config.typedData) throw failure(4200, "Unsupported method");
      const answer = await window.__anvil(chainId, method, params);
      if (answer.error) throw failure(answer.error.code, answer.error.message, answer.error.data);
      return answer.result;
    },
  };
})();
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: toolchain/setup.sh installs it (as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """Saves a full-page screenshot under test-artifacts/web/ (gitignored) and returns its path."""

    def save(page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


def with_wallet(
    page: Page,
    shop: LocalShop,
    *,
    account: str | None = None,
    start_on_chain: int | None = None,
    reject_once: tuple[str, ...] = (),
    typed_data: bool = True,
    known_chains: tuple[int, ...] | None = None,
    keeps_chain: bool = False,
) -> Page:
    """Gives the page a wallet holding `account` (default: dev account BUYER_ACCOUNT). It starts on
    `start_on_chain` (default: the shop's chain), rejects the first call of each method in
    `reject_once` as a buyer would (EIP-1193 error 4001), and refuses typed data when `typed_data`
    is false. With `known_chains` it knows only those networks (and those the page adds): switching
    to another fails with EIP-1193 error 4902, as in a wallet that was never told of it. On one of
    the shop's chains it talks to that chain's anvil; on any other (mainnet, …), to the first's.
    It starts on `start_on_chain` with every page load, unless `keeps_chain`: then it stays on the
    network it switched to, and knows those it was told of, as a real wallet does."""
    rpc = httpx.Client(timeout=10)
    anvils = {hex(chain.record.chain_id): chain.anvil.http_url for chain in shop.more_chains}

    def anvil(chain_id: str, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return rpc.post(anvils.get(chain_id, shop.anvil.http_url), json=body).json()

    page.expose_function("__anvil", anvil)
    config = {
        "account": account or shop.buyer(BUYER_ACCOUNT).account.address,
        "startChainId": hex(start_on_chain or shop.record.chain_id),
        "rejectOnce": list(reject_once),
        "typedData": typed_data,
        "knownChains": None if known_chains is None else [hex(chain) for chain in known_chains],
        "keepsChain": keeps_chain,
    }
    page.add_init_script(WALLET % json.dumps(config))
    return page
