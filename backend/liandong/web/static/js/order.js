// The buyer's order page: pay with the wallet, watch paid → confirmations n/N → delivered live,
// then open the keys sealed to this page's key and check them against the escrow's record. All of
// it on the order's chain (its state's `chain_id`): its escrow, its block time, its explorer.
import { ApiError, api, liveSocket, sleep } from "./api.js";
import { commitmentOf, commitmentOnChain, explain, payQuote, quoteExpired } from "./escrow.js";
import { chainData, pageData, setText } from "./i18n.js";
import { newKeyPair, openSealed } from "./sealed.js";
import { buyerSession, saveBuyerSession, saveOrder, savedOrder } from "./storage.js";
import { formatAmount } from "./tokens.js";
import * as wallet from "./wallet.js";

const orderId = pageData.orderId;
const $ = (id) => document.getElementById(id);
const RANK = { quoted: 0, paid: 1, confirmed: 2, delivered: 3, refunding: 3, refunded: 4 };
const CHAIN_CHECKS = 30; // the escrow records a delivery about a second after it: look for a minute
const LOG_RANGE = 10_000; // blocks searched back for the record when the payment's block is unknown

let saved = savedOrder(orderId);
let status = null;
let delivered = null; // {keys, salt, commitment} once the box is open
let retry = null; // what to try again after switching the network
let chain = null; // the order's chain (its page data), once the order's state said which
const early = []; // the stream's events that came before the state: shown after it
let pushed = null; // the keys sealed to this page that came with the `delivered` event
// This page's key pair, made once per load: the stream is told its public key, so the shop seals
// the keys to it at their delivery; `POST …/keys` asks with the same one. null: no X25519 here.
const pair = window.isSecureContext ? await newKeyPair().catch(() => null) : null;

function proof() {
  if (saved?.token) return { "X-Order-Token": saved.token };
  const session = buyerSession();
  return session ? { Authorization: `Bearer ${session.token}` } : null;
}

/** The order stream's first message: the same proof, as the WebSocket cannot carry headers. */
function hello() {
  const key = pair ? { public_key: pair.publicKey } : {};
  if (saved?.token) return { type: "auth", token: saved.token, ...key };
  const session = buyerSession();
  return session ? { type: "auth", session: session.token, ...key } : null;
}

/** While a 429 is waited out: "busy, trying again in n s", in the page's language. */
function waiting(seconds) {
  if (seconds > 0) setText($("notice"), "busy_retrying", { seconds });
  else clearText($("notice"));
  $("notice").hidden = seconds <= 0;
}

function clearText(element) {
  delete element.dataset.i18n;
  element.textContent = "";
}

// ------------------------------------------------------------------ status

function showSummary(state) {
  chain = chainData(state.chain_id);
  $("summary-product").textContent = saved?.product ?? `#${state.product_id}`;
  $("summary-quantity").textContent = state.quantity;
  $("summary-amount").textContent = formatAmount(state.amount, state.token, chain.id);
  $("summary-network").textContent = chain.name;
  showPaymentLink();
  $("summary").hidden = false;
}

/** The payment on the chain's explorer, once its transaction is known (a local chain has none). */
function showPaymentLink() {
  const template = chain?.explorer?.tx;
  const hash = saved?.txHash;
  $("summary-payment").hidden = !(template && hash);
  if (!(template && hash)) return;
  const link = $("payment-link");
  link.href = template.replace("{hash}", hash);
  link.textContent = `${hash.slice(0, 10)}…${hash.slice(-8)}`;
}

/** Moves the page to `next`; a stale answer never moves it back, only a reorg's event does. */
function showStatus(next, event = {}) {
  if (status !== null && RANK[next] < RANK[status] && !event.reason) return;
  status = next;
  const reached = RANK[next];
  for (const step of $("steps").children) {
    const done =
      step.dataset.step === "delivered" ? next === "delivered" : reached >= RANK[step.dataset.step];
    step.classList.toggle("done", done && !next.startsWith("refund"));
  }
  if (event.awaiting) showTagWait(event);
  else if (event.required) showConfirmations(event.confirmations, event.required);
  const opening = next === "delivered" && !delivered?.keys; // never "your keys are below" without them
  setText($("status"), event.reason ? "status_reorged" : opening ? "status_delivered_opening" : `status_${next}`);
  showPayment();
  if (next === "delivered") revealKeys();
}

/** "2 of 12, about 20 s": the wait left, from the chain's typical block time (its profile). */
function showConfirmations(n, required) {
  const blockTime = chain.blockTime;
  const left = required - n;
  if (left > 0 && blockTime) {
    const seconds = Math.max(1, Math.round(left * blockTime));
    setText($("confirmations"), "confirmations_eta", { n, required, seconds });
  } else {
    setText($("confirmations"), "confirmations_count", { n, required });
  }
}

const TAG_TEXTS = {
  safe: {
    wait: "confirmations_safe",
    eta: "confirmations_safe_eta",
    etaMinutes: "confirmations_safe_eta_minutes",
    reached: "confirmations_safe_reached",
  },
  finalized: {
    wait: "confirmations_finalized",
    eta: "confirmations_finalized_eta",
    etaMinutes: "confirmations_finalized_eta_minutes",
    reached: "confirmations_finalized_reached",
  },
};

/** A tag policy's wait, "waiting for the safe block, about 40 s": the blocks the chain's safe (or
 * finalized) block is still below the payment's (`blocks_left`, from the shop's indexer) at the
 * chain's typical block time; once under it, a large order's blocks on top ("n of N") if any. */
function showTagWait(event) {
  const texts = TAG_TEXTS[event.awaiting];
  if (!texts) return;
  const element = $("confirmations");
  const left = event.blocks_left;
  if (left === 0) {
    if (event.required && event.confirmations < event.required) {
      return showConfirmations(event.confirmations, event.required);
    }
    return setText(element, texts.reached);
  }
  const blockTime = chain.blockTime;
  if (left == null || !blockTime) return setText(element, texts.wait);
  const seconds = Math.max(1, Math.round(left * blockTime));
  if (seconds >= 120) setText(element, texts.etaMinutes, { minutes: Math.round(seconds / 60) });
  else setText(element, texts.eta, { seconds });
}

function showPayment() {
  const payable = status === "quoted" && saved?.quote;
  $("pay").hidden = !payable;
  if (!payable) return clearText($("activity"));
  if (quoteExpired(saved.quote)) return showProblem(new wallet.Problem("quote_expired"));
  const until = new Date(saved.quote.expiry * 1000).toLocaleTimeString();
  setText($("expires"), "quote_valid_until", { time: until });
}

async function refresh() {
  const headers = proof();
  if (!headers) return needSignIn();
  try {
    const state = await api(`/api/orders/${orderId}`, { headers, onWait: waiting });
    showSummary(state);
    showStatus(state.status);
    for (const event of early.splice(0)) onEvent(event);
  } catch (error) {
    if (!(error instanceof ApiError && [401, 404].includes(error.status))) return showProblem(error);
    saved = null; // a token or a session that does not open this order: the wallet may
    saveBuyerSession(null);
    needSignIn();
  }
}

function onEvent(event) {
  if (event.type === "ready" && delivered?.keys) live.send({ type: "ack" }); // a reconnect: say it again
  if (event.type !== "order") return;
  if (!chain) return early.push(event); // the order's state (which chain) is on its way
  if (event.keys && !delivered) pushed = event.keys; // opened by revealKeys, without a request
  if (event.tx_hash && saved) saveOrder(orderId, (saved = { ...saved, txHash: event.tx_hash }));
  showPaymentLink();
  showStatus(event.status, event);
}

// ------------------------------------------------------------------ wallet

function showProblem(error, retryWith = null) {
  const problem = error instanceof ApiError ? apiProblem(error) : explain(error);
  setText($("problem-text"), problem.key, problem.vars);
  $("switch-network").hidden = problem.key !== "wrong_network";
  $("buy-again").hidden = problem.key !== "quote_expired";
  $("pay").hidden ||= problem.key === "quote_expired";
  retry = retryWith;
  $("problem").hidden = false;
}

/** The shop's refusals in the page's language (the API's own `detail` is English). */
function apiProblem(error) {
  if (error.status === 429) return new wallet.Problem("too_many_requests");
  if (error.status >= 500) return new wallet.Problem("shop_unavailable");
  if (error.status === 409) return new wallet.Problem("keys_not_ready");
  if (error.status === 401 || error.status === 404) return new wallet.Problem("order_not_opened");
  return new wallet.Problem("request_failed", { reason: error.detail });
}

/** A refusal that passes by itself (busy, the shop restarting): the page tries again alone. */
function transient(error) {
  return error instanceof ApiError && (error.status === 429 || error.status >= 500 || error.status === 409);
}

function hideProblem() {
  $("problem").hidden = true;
}

async function pay() {
  hideProblem();
  $("pay-button").disabled = true;
  try {
    const account = await wallet.connect();
    await wallet.requireChain(chain.id);
    const progress = (key) => setText($("activity"), key);
    const hash = await payQuote({ account, quote: saved.quote, signature: saved.signature, chain, progress });
    saveOrder(orderId, (saved = { ...saved, txHash: hash }));
    showPaymentLink();
    if (status === "quoted") setText($("activity"), "payment_sent");
  } catch (error) {
    clearText($("activity"));
    showProblem(error, pay);
  } finally {
    $("pay-button").disabled = false;
  }
}

async function switchNetwork() {
  try {
    await wallet.switchChain(chain.id);
    hideProblem();
    await retry?.();
  } catch (error) {
    showProblem(error, retry);
  }
}

function needSignIn() {
  $("signin").hidden = false;
}

/** Sign-In with Ethereum: the wallet that paid opens the order without its token. */
async function signIn() {
  hideProblem();
  try {
    const address = await wallet.connect();
    const challenge = await api("/api/buyer/challenge", { method: "POST", json: { address } });
    const signature = await wallet.signMessage(address, challenge.message);
    saveBuyerSession(
      await api("/api/buyer/session", { method: "POST", json: { message: challenge.message, signature } }),
    );
    $("signin").hidden = true;
    live.reconnect(); // the stream needs the new session as its proof
    await refresh();
  } catch (error) {
    showProblem(error, signIn);
  }
}

// ------------------------------------------------------------------ keys

async function revealKeys() {
  if (delivered) return;
  if (!proof()) return needSignIn();
  if (!window.isSecureContext) return showProblem(new wallet.Problem("insecure_page"));
  delivered = {}; // one request at a time
  try {
    if (!pair) throw new wallet.Problem("browser_too_old"); // no X25519 in this browser's WebCrypto
    const sealed =
      pushed ??
      (await api(`/api/orders/${orderId}/keys`, {
        method: "POST",
        headers: proof(),
        json: { public_key: pair.publicKey },
        onWait: waiting,
      }));
    pushed = null; // if it does not open, the retry asks for the keys instead
    const keys = JSON.parse(await openSealed(sealed.box, pair, orderId));
    delivered = { keys, salt: sealed.salt, commitment: sealed.commitment };
    showKeys(keys);
    setText($("status"), "status_delivered");
    hideProblem();
    live.send({ type: "ack" }); // the buyer has the keys: the in-site channel may count it
    await verify();
  } catch (error) {
    if (!delivered?.keys) delivered = null;
    showProblem(error, revealKeys);
    if (transient(error) && !delivered) setTimeout(revealKeys, (error.retryAfter ?? 5) * 1000);
  }
}

function showKeys(keys) {
  const items = keys.map((key) => {
    const item = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = key;
    const copy = document.createElement("button");
    copy.type = "button";
    setText(copy, "copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(key);
        setText(copy, "copied");
      } catch {
        getSelection().selectAllChildren(code); // no clipboard access: the buyer copies the selection
        setText(copy, "copy_selected");
      }
    });
    item.append(code, copy);
    return item;
  });
  $("keys").replaceChildren(...items);
  $("keys-section").hidden = false;
}

function verdict(kind, key) {
  $("verify-result").dataset.verdict = kind;
  setText($("verify-result"), key);
}

async function searchFrom() {
  if (saved?.txHash) {
    const receipt = await wallet.request("eth_getTransactionReceipt", [saved.txHash]);
    if (receipt) return Number(BigInt(receipt.blockNumber));
  }
  return Math.max(0, Number(BigInt(await wallet.request("eth_blockNumber"))) - LOG_RANGE);
}

/** Recomputes the commitment from the keys and the salt; compares it with the shop's answer and
 * with the escrow's OrderDelivered event, read through the wallet's own node. */
async function verify() {
  const mine = commitmentOf(orderId, delivered.salt, delivered.keys);
  if (mine !== delivered.commitment) return verdict("bad", "verify_mismatch_shop");
  if (!window.ethereum) return verdict("partial", "verify_shop_only");
  $("verify-button").disabled = true;
  try {
    await wallet.requireChain(chain.id);
    const from = await searchFrom();
    for (let check = 0; check < CHAIN_CHECKS; check++) {
      const recorded = await commitmentOnChain(chain.escrow, orderId, from);
      if (recorded)
        return verdict(
          recorded === mine ? "good" : "bad",
          recorded === mine ? "verify_ok" : "verify_mismatch_chain",
        );
      verdict("waiting", "verify_waiting");
      await sleep(2000);
    }
    verdict("waiting", "verify_not_yet");
  } catch (error) {
    verdict("partial", "verify_shop_only");
    showProblem(error, verify);
  } finally {
    $("verify-button").disabled = false;
  }
}

$("pay-button").addEventListener("click", pay);
$("signin-button").addEventListener("click", signIn);
$("switch-network").addEventListener("click", switchNetwork);
$("verify-button").addEventListener("click", () => delivered?.keys && verify());
$("buy-again").href = saved ? `/#product-${saved.quote.productId}` : "/";
const live = liveSocket(`/api/orders/${orderId}/events`, { onEvent, onOpen: refresh, hello });
refresh();
