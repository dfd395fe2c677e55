// The dashboard's Funds panel. The figures come from the shop (GET /api/merchant/funds): per token
// what the escrow holds and owes as the audit computes them from the chain, the operator key's
// gas, the deliveries not on-chain yet. The owner's actions (withdraw, pause, resume) are signed
// by the owner's own wallet (EIP-1193): the call is built here from the escrow's ABI, and who the
// owner and the payout address are, whether payments are paused and what a withdrawal sends are
// read through the wallet's own provider. The server holds no owner key and cannot alter what is
// signed; the escrow's address it gives is shown, for the owner to check against their record.
// A shop on several chains has an escrow on each: the panel shows one network at a time, picked
// in its network selector (GET /api/merchant/funds?chain_id=), and the wallet acts on that one.
import { Interface, getAddress } from "../vendor/ethers.min.js";
import { api } from "./api.js";
import { chainOf, chains, networkOf, severalChains } from "./dashboard_chains.js";
import { onLanguageChange, setText, t } from "./i18n.js";
import { NATIVE, formatAmount, tokenInfo } from "./tokens.js";
import { REJECTED, Problem, connect, request, switchChain, waitForReceipt } from "./wallet.js";

const $ = (id) => document.getElementById(id);
const escrowAbi = new Interface([
  "function owner() view returns (address)",
  "function payout() view returns (address)",
  "function paused() view returns (bool)",
  "function merchantBalance(address token) view returns (uint256)",
  "function withdraw(address token)",
  "function pause()",
  "function unpause()",
]);
let chosen = chains[0]; // the network the panel shows and the wallet acts on
const escrow = () => getAddress(chosen.escrow);
const brief = (shown) => shown.replace(/(\.\d{6})\d+/, "$1"); // a figure, not an exact amount
const amounts = (book) => [book.held, book.escrowed, book.merchant, book.fees, book.refund_credits];
let wallet = null; // { account, owner, payout, paused } as last read through the wallet
let mounted = false;

// ------------------------------------------------------------------ the shop's figures

function say(key, vars = {}, state = "") {
  setText($("funds-message"), key, vars);
  $("funds-message").dataset.state = state;
}

function withdrawButton(book) {
  if (BigInt(book.merchant) === 0n) return "";
  const button = document.createElement("button");
  button.type = "button";
  setText(button, "funds_withdraw");
  button.addEventListener("click", () => act(() => withdraw(book.token)));
  return button;
}

function renderBooks(funds) {
  $("funds-books")
    .querySelector("tbody")
    .replaceChildren(
      ...funds.tokens.map((book) => {
        const row = document.createElement("tr");
        row.dataset.token = book.token;
        const shown = amounts(book).map((amount) => formatAmount(amount, book.token, funds.chain_id));
        const cells = [tokenInfo(book.token, funds.chain_id).symbol, ...shown];
        for (const cell of [...cells, withdrawButton(book)]) row.insertCell().append(cell);
        return row;
      }),
    );
}

function render(funds) {
  const where = { escrow: funds.escrow, chain: networkOf(funds.chain_id), block: funds.block };
  setText($("funds-escrow"), "funds_escrow", where);
  renderBooks(funds);
  $("funds-findings").hidden = funds.findings.length === 0;
  setText($("funds-findings"), "funds_findings", { findings: funds.findings.join("; ") });
  const gas = funds.operator;
  const native = (amount) => formatAmount(amount, NATIVE, funds.chain_id);
  $("operator-gas").textContent = brief(native(gas.balance));
  $("operator-gas").dataset.state = gas.low ? "low" : "";
  $("gas-warning").hidden = !gas.low;
  setText($("gas-warning"), "funds_gas_low", {
    address: gas.address,
    balance: native(gas.balance),
    needed: native(gas.needed),
    batches: gas.alert_batches,
  });
  const lag = funds.settlement;
  const waiting = { waiting: lag.waiting, seconds: Math.round(lag.oldest_seconds ?? 0) };
  setText($("settlement-lag"), lag.waiting ? "funds_lag_waiting" : "funds_lag_none", waiting);
  $("settlement-lag").dataset.state = lag.lagging ? "low" : "";
}

/** The chosen network's figures read again (the shop reads the chain at its head); an answer
 * for a network no longer chosen is dropped. */
async function refresh() {
  const asked = chosen.id;
  try {
    const funds = await api(`/api/merchant/funds?chain_id=${asked}`);
    if (asked === chosen.id) render(funds);
  } catch (error) {
    if (asked === chosen.id) say("request_failed", { reason: error.message }, "failed");
  }
}

/** Another network picked: its figures, and the wallet read again for that escrow. */
function choose(chainId) {
  chosen = chainOf(chainId) ?? chains[0];
  wallet = null;
  for (const id of ["funds-account", "funds-message"]) $(id).textContent = "";
  $("escrow-paused").textContent = "–";
  $("escrow-paused").dataset.state = "";
  $("funds-switch").hidden = true;
  $("funds-books").querySelector("tbody").replaceChildren();
  return refresh();
}

function mountSelector() {
  $("funds-network").hidden = !severalChains;
  $("funds-chain").replaceChildren(...chains.map((chain) => new Option(networkOf(chain.id), chain.id)));
  $("funds-chain").value = String(chosen.id);
  $("funds-chain").addEventListener("change", (event) => choose(Number(event.currentTarget.value)));
}

// ------------------------------------------------------------------ the owner's wallet

async function view(name, args = []) {
  const call = { to: escrow(), data: escrowAbi.encodeFunctionData(name, args) };
  return escrowAbi.decodeFunctionResult(name, await request("eth_call", [call, "latest"]))[0];
}

function showWallet() {
  if (!wallet) return;
  const roles = [];
  if (wallet.account === wallet.owner) roles.push(t("funds_role_owner"));
  if (wallet.account === wallet.payout) roles.push(t("funds_role_payout"));
  if (wallet.owner && !roles.length) roles.push(t("funds_role_none"));
  const vars = { account: wallet.account, roles: roles.join(t("funds_role_separator")) || "–" };
  setText($("funds-account"), "funds_account", vars);
  if (wallet.paused === undefined) return;
  setText($("escrow-paused"), wallet.paused ? "funds_paused" : "funds_accepting");
  $("escrow-paused").dataset.state = wallet.paused ? "low" : "";
  $("funds-pause").hidden = wallet.paused;
  $("funds-unpause").hidden = !wallet.paused;
}

/** Connects the wallet and reads the escrow's roles and state through it; on another chain the
 * wallet is asked nothing more and the page offers to switch. */
async function readWallet() {
  const account = getAddress(await connect());
  wallet = { account };
  const current = Number(BigInt(await request("eth_chainId")));
  $("funds-switch").hidden = current === chosen.id;
  showWallet();
  if (current !== chosen.id) {
    const names = { current: networkOf(current), expected: networkOf(chosen.id) };
    throw new Problem("funds_wrong_network", names);
  }
  const [owner, payout, paused] = await Promise.all([view("owner"), view("payout"), view("paused")]);
  wallet = { account, owner, payout, paused };
  showWallet();
  return wallet;
}

/** Tries the call (eth_call), has the wallet send it and waits until it is mined. */
async function send(from, name, args = []) {
  const tx = { from, to: escrow(), data: escrowAbi.encodeFunctionData(name, args) };
  await request("eth_call", [tx, "latest"]);
  say("funds_confirm_in_wallet", {}, "running");
  const hash = await request("eth_sendTransaction", [tx]);
  say("funds_tx_sent", { hash }, "running");
  const receipt = await waitForReceipt(hash);
  return { hash, block: Number(BigInt(receipt.blockNumber)) };
}

async function withdraw(token) {
  const { account, owner, payout } = await readWallet();
  if (account !== owner && account !== payout) {
    throw new Problem("funds_not_merchant", { account, owner, payout });
  }
  const amount = await view("merchantBalance", [token]);
  const on = chosen.id;
  if (amount === 0n) throw new Problem("funds_nothing", { token: tokenInfo(token, on).symbol });
  const { hash, block } = await send(account, "withdraw", [token]);
  const left = formatAmount(await view("merchantBalance", [token]), token, on);
  say("funds_withdrawn", { amount: formatAmount(amount, token, on), payout, hash, block, left }, "done");
}

async function setPaused(paused) {
  const { account, owner } = await readWallet();
  if (account !== owner) throw new Problem("funds_not_owner", { account, owner });
  const { hash, block } = await send(account, paused ? "pause" : "unpause");
  await readWallet();
  say(paused ? "funds_paused_done" : "funds_unpaused_done", { hash, block }, "done");
}

/** Runs an action of the panel; what went wrong is said in the page's language. */
async function act(action) {
  const buttons = $("funds").querySelectorAll("button");
  for (const button of buttons) button.disabled = true;
  try {
    await action();
  } catch (error) {
    if (error instanceof Problem) say(error.key, error.vars, "failed");
    else if (error?.code === REJECTED) say("rejected", {}, "failed");
    else say("wallet_failed", { reason: error?.message ?? String(error) }, "failed");
  } finally {
    for (const button of buttons) button.disabled = false;
    await refresh(); // the new balances, after a transaction as after a refusal
  }
}

/** Shows the panel and wires its buttons (once). */
export function mountFunds() {
  if (!mounted) {
    mounted = true;
    $("funds-refresh").addEventListener("click", refresh);
    $("funds-connect").addEventListener("click", () => act(readWallet));
    const switched = () => switchChain(chosen.id).then(readWallet);
    $("funds-switch").addEventListener("click", () => act(switched));
    $("funds-pause").addEventListener("click", () => act(() => setPaused(true)));
    $("funds-unpause").addEventListener("click", () => act(() => setPaused(false)));
    onLanguageChange(showWallet);
    mountSelector();
  }
  return refresh();
}
