// The merchant dashboard: login, the live order feed with refunds and resends, the efficiency
// board, sales charts, stock with live deltas, key import with progress, the abnormal delivery
// log and the A/B results of the message templates. A shop on several chains gets the board, the
// backlog, the alerts and the sales broken down by network (`dashboard_chains.js`), amounts always
// with the tokens of their own chain.
import { ApiError, api, liveSocket, sleep } from "./api.js";
import { draw } from "./charts.js";
import { chains, networkOf, severalChains, tokenLabel } from "./dashboard_chains.js";
import { mountFunds } from "./funds.js";
import { onLanguageChange, setText, t } from "./i18n.js";
import { formatAmount, tokenInfo, units } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const SHOWN_ORDERS = 25;
const REFRESH_DELAY_MS = 1500; // figures are read again this long after the last order event
const IMPORT_POLL_MS = 300;

const figures = {}; // the last answer of each statistics route, drawn again on a language switch
const stock = new Map(); // product id → stock level, kept current by the feed's deltas
const orders = new Map(); // order id → summary, newest first
let refreshTimer = null;

// ------------------------------------------------------------------ formatting and tables

const seconds = (value) =>
  value === null ? "–" : value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
const percent = (share) => (share === null ? "–" : `${(share * 100).toFixed(1)} %`);
const shortId = (orderId) => `${orderId.slice(0, 10)}…`;
const localTime = (iso) => new Date(iso).toLocaleString();
const COUNTS = { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }; // whole orders on the axis
const productName = (id) => stock.get(id)?.name ?? `#${id}`;

function translated(key, vars = {}) {
  const span = document.createElement("span");
  setText(span, key, vars);
  return span;
}

function fillTable(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  if (!rows.length) {
    const row = document.createElement("tr");
    const cell = row.insertCell();
    cell.className = "empty";
    cell.colSpan = $(tableId).rows[0].cells.length;
    setText(cell, "nothing_to_show");
    return body.replaceChildren(row);
  }
  body.replaceChildren(
    ...rows.map(({ cells, className = "" }) => {
      const row = document.createElement("tr");
      row.className = className;
      for (const cell of cells) {
        const td = document.createElement("td");
        td.append(cell ?? "–");
        row.append(td);
      }
      return row;
    }),
  );
}

function since() {
  const hours = Number($("window").value);
  return `since=${encodeURIComponent(new Date(Date.now() - hours * 3600_000).toISOString())}`;
}

// ------------------------------------------------------------------ efficiency and sales

function renderEfficiency(board) {
  const latency = board.payment_to_delivery;
  for (const name of ["p50", "p95", "p99"]) $(name).textContent = seconds(latency[name]);
  $("share").textContent = percent(board.share_within);
  $("delivered-count").textContent = latency.count;
  setText($("threshold"), "within_threshold", { seconds: board.threshold_seconds });
  $("latency-alert").hidden = !board.alert;
  if (board.alert) {
    const vars = {
      share: percent(board.share_within),
      seconds: board.threshold_seconds,
      target: percent(board.target_share),
    };
    setText($("latency-alert"), "latency_alert", vars);
  }
  // Settlement lag, operator balance, anomalies: each in the page's language, with its count (and
  // on several chains the networks it concerns).
  const alerts = board.alerts ?? [];
  $("shop-alerts").hidden = alerts.length === 0;
  $("shop-alerts").replaceChildren(
    ...alerts.map((alert) => {
      const item = document.createElement("li");
      item.append(translated(`alert_${alert.kind}`, { count: alert.count }));
      const networks = alertNetworks(alert);
      if (severalChains && networks) item.append(` (${networks})`);
      return item;
    }),
  );
  renderChainBoard(board);
  const labels = board.histogram.map((bucket) =>
    bucket.high === null ? `> ${bucket.low} s` : `≤ ${bucket.high} s`,
  );
  draw(
    "latency-chart",
    "bar",
    labels,
    [{ label: t("orders"), data: board.histogram.map((bucket) => bucket.count) }],
    COUNTS,
  );
}

/** The networks an alert concerns: "Base 2, Polygon PoS 1", or the operator key's network. */
function alertNetworks(alert) {
  const counts = alert.by_chain ?? [];
  if (counts.length) return counts.map((chain) => `${networkOf(chain.chain_id)} ${chain.count}`).join(", ");
  return alert.chain_id == null ? "" : networkOf(alert.chain_id);
}

/** Every chain the shop serves, then any other the figures name: each one's row, or `empty`'s. */
function everyChain(rows, empty) {
  const found = new Map(rows.map((row) => [row.chain_id, row]));
  const served = chains.map((chain) => found.get(chain.id) ?? { ...empty, chain_id: chain.id });
  return [...served, ...rows.filter((row) => !chains.some((chain) => chain.id === row.chain_id))];
}

const NO_LATENCY = { count: 0, p50: null, p95: null, p99: null, max: null };
const NO_BACKLOG = {
  awaiting_confirmations: 0,
  awaiting_keys: 0,
  deliveries_to_record: 0,
  refunds_to_send: 0,
};
const IDLE_CHAIN = { payment_to_delivery: NO_LATENCY, share_within: null, alert: false, backlog: NO_BACKLOG };

/** The board and the backlog per network, shown when the shop serves several chains. */
function renderChainBoard(board) {
  $("chain-board").hidden = !severalChains;
  if (!severalChains) return;
  setText($("chains-threshold"), "within_threshold", { seconds: board.threshold_seconds });
  fillTable(
    "chains-efficiency",
    everyChain(board.by_chain ?? [], IDLE_CHAIN).map((chain) => ({
      className: chain.alert ? "low" : "",
      cells: [
        networkOf(chain.chain_id),
        seconds(chain.payment_to_delivery.p50),
        seconds(chain.payment_to_delivery.p95),
        seconds(chain.payment_to_delivery.p99),
        percent(chain.share_within),
        String(chain.payment_to_delivery.count),
        String(chain.backlog.awaiting_confirmations),
        String(chain.backlog.awaiting_keys),
        String(chain.backlog.deliveries_to_record),
        String(chain.backlog.refunds_to_send),
      ],
    })),
  );
}

function hourLabel(iso) {
  const hour = new Date(iso);
  const time = `${String(hour.getHours()).padStart(2, "0")}:00`;
  return Number($("window").value) > 24 ? `${hour.getMonth() + 1}/${hour.getDate()} ${time}` : time;
}

function renderSales(sales) {
  setText($("sales-total"), "sales_total", { orders: sales.orders, units: sales.units });
  const hours = sales.by_hour.map((hour) => hourLabel(hour.hour));
  draw(
    "orders-chart",
    "bar",
    hours,
    [{ label: t("orders"), data: sales.by_hour.map((hour) => hour.orders) }],
    COUNTS,
  );
  // One line per (chain, token): a token address means something only with its chain.
  const revenue = sales.by_token.map(({ chain_id: chain, token }) => ({
    label: tokenLabel(token, chain),
    data: sales.by_hour.map((hour) => {
      const amounts = hour.revenue_by_chain?.[String(chain)] ?? hour.revenue;
      return Number(units(amounts[token] ?? "0", token, chain));
    }),
  }));
  draw("revenue-chart", "line", hours, revenue);
  const products = sales.by_product;
  draw(
    "products-chart",
    "bar",
    products.map((product) => product.name),
    [
      { label: t("orders"), data: products.map((product) => product.orders) },
      { label: t("units"), data: products.map((product) => product.units) },
    ],
    COUNTS,
  );
  const tokens = sales.by_token;
  draw(
    "tokens-chart",
    "doughnut",
    tokens.map(({ chain_id: chain, token }) => tokenLabel(token, chain)),
    [{ label: t("orders"), data: tokens.map((token) => token.orders) }],
  );
  fillTable(
    "tokens",
    tokens.map((row) => ({
      cells: [
        networkOf(row.chain_id),
        tokenOnChain(row.token, row.chain_id),
        String(row.orders),
        formatAmount(row.revenue, row.token, row.chain_id),
        formatAmount(row.refunded, row.token, row.chain_id),
      ],
    })),
  );
  $("chain-sales").hidden = !severalChains;
  if (severalChains) {
    fillTable(
      "chains-sales",
      everyChain(sales.by_chain ?? [], { orders: 0, units: 0 }).map((chain) => ({
        cells: [networkOf(chain.chain_id), String(chain.orders), String(chain.units)],
      })),
    );
  }
}

/** A token's symbol, its address in the tooltip (the same symbol may be two tokens on two chains). */
function tokenOnChain(token, chainId) {
  const symbol = tokenInfo(token, chainId).symbol;
  return Object.assign(document.createElement("span"), { textContent: symbol, title: token });
}

// ------------------------------------------------------------------ stock and import

function renderStock() {
  fillTable(
    "stock",
    [...stock.values()].map((level) => ({
      className: level.sold_out ? "sold-out" : level.low ? "low" : "",
      cells: [
        level.name,
        String(level.available),
        String(level.sold),
        String(level.total),
        translated(level.sold_out ? "stock_sold_out" : level.low ? "stock_low" : "stock_in_stock"),
      ],
    })),
  );
  const warnings = [...stock.values()].filter((level) => level.low || level.sold_out).length;
  $("stock-warning").hidden = warnings === 0;
  setText($("stock-warning"), "stock_warning", { count: warnings });
  const select = $("import-product");
  const chosen = select.value;
  select.replaceChildren(
    ...[...stock.values()].map((level) => new Option(`${level.name} (${level.sku})`, level.product_id)),
  );
  if (chosen) select.value = chosen;
}

/** A stock change from the feed: keys sold (negative) or imported (positive). */
function applyStockChange({ product_id: productId, change }) {
  const level = stock.get(productId);
  if (!level) return loadStock();
  level.available += change;
  if (change > 0) level.total += change;
  else level.sold -= change;
  level.low = level.available * 100 < level.total * level.low_stock_percent;
  level.sold_out = level.available === 0;
  renderStock();
}

function showJob(job) {
  const progress = $("import-progress");
  progress.max = Math.max(job.total, 1);
  progress.value = job.state === "done" ? progress.max : job.done;
  if (job.state === "running") {
    setText($("import-result"), "import_running", {
      stage: t(`stage_${job.stage}`),
      done: job.done,
      total: job.total,
    });
  } else if (job.state === "failed") {
    setText($("import-result"), "import_failed", { reason: job.error });
  } else {
    const duplicates = (job.duplicates_in_file ?? 0) + (job.duplicates_existing ?? 0);
    setText($("import-result"), "import_done", { imported: job.imported, duplicates });
  }
  $("import-result").dataset.state = job.state;
}

/** Sends the file as the request body; a large one answers 202 with a job, polled until it ends. */
async function importKeys(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const [file] = form.elements.file.files;
  if (!file) return;
  const button = form.querySelector("button");
  const progress = $("import-progress");
  button.disabled = true;
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate while the file uploads
  setText($("import-result"), "import_uploading");
  $("import-result").dataset.state = "running";
  try {
    const csv = file.name.toLowerCase().endsWith(".csv");
    const filename = encodeURIComponent(file.name.slice(-255));
    const path = `/api/merchant/products/${form.elements.product.value}/keys?filename=${filename}`;
    let job = await api(path, {
      method: "POST",
      body: file,
      headers: { "Content-Type": csv ? "text/csv" : "text/plain" },
    });
    while (job.state === "running") {
      showJob(job);
      await sleep(IMPORT_POLL_MS);
      job = await api(`/api/merchant/imports/${job.id}`);
    }
    showJob(job);
  } catch (error) {
    progress.hidden = true;
    showJob({ state: "failed", error: error.message });
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ orders, refunds and resends

function orderActions(order) {
  const actions = document.createElement("span");
  const action = (key, handler) => {
    const button = document.createElement("button");
    button.type = "button";
    setText(button, key);
    button.addEventListener("click", () => handler(order.order));
    actions.append(button);
  };
  if (order.status === "paid" || order.status === "confirmed") action("refund", refund);
  if (order.status === "delivered") action("resend", resend);
  return actions;
}

/** The newest orders; a row the feed just changed is marked once, for the eye. */
function renderOrders() {
  const shown = [...orders.values()].slice(0, SHOWN_ORDERS);
  fillTable(
    "orders",
    shown.map((order) => ({
      className: order.fresh ? "fresh" : "",
      cells: [
        localTime(order.created_at),
        Object.assign(document.createElement("code"), {
          textContent: shortId(order.order),
          title: order.order,
        }),
        productName(order.product_id),
        networkOf(order.chain_id),
        formatAmount(order.amount, order.token, order.chain_id),
        translated(`state_${order.status}`),
        orderActions(order),
      ],
    })),
  );
  for (const order of shown) order.fresh = false;
}

/** An order event of the feed: a new order goes on top, a known one changes its status. */
function applyOrderEvent(event) {
  const known = orders.get(event.order);
  const fields = Object.fromEntries(
    ["status", "product_id", "token", "amount", "payer"]
      .filter((name) => name in event)
      .map((name) => [name, event[name]]),
  );
  if (event.chain_id !== undefined) fields.chain_id = event.chain_id;
  const order = {
    ...(known ?? { order: event.order, created_at: new Date().toISOString() }),
    ...fields,
    fresh: true,
  };
  if (known) orders.set(event.order, order);
  else {
    const rest = [...orders];
    orders.clear();
    for (const [id, value] of [[event.order, order], ...rest]) orders.set(id, value);
  }
  if (order.amount !== undefined && order.chain_id !== undefined) renderOrders();
  else loadOrders(); // an order quoted since the list was read: its terms (and chain) come with the list
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshFigures, REFRESH_DELAY_MS);
}

function report(key, vars, state) {
  setText($("orders-message"), key, vars);
  $("orders-message").dataset.state = state;
}

async function refund(orderId) {
  if (!confirm(t("confirm_refund", { order: shortId(orderId) }))) return;
  try {
    await api(`/api/merchant/orders/${orderId}/refund`, {
      method: "POST",
      json: { reason: "refunded from the dashboard" },
    });
    report("refund_sent", { order: shortId(orderId) }, "done");
  } catch (error) {
    report("request_failed", { reason: error.message }, "failed");
  }
}

async function resend(orderId) {
  try {
    const attempts = await api(`/api/merchant/orders/${orderId}/resend`, { method: "POST" });
    const tried = attempts.map((attempt) => `${attempt.channel} ${attempt.succeeded ? "✓" : "✗"}`).join(", ");
    report("resend_done", { order: shortId(orderId), attempts: tried || "–" }, "done");
  } catch (error) {
    report("request_failed", { reason: error.message }, "failed");
  }
}

// ------------------------------------------------------------------ abnormal log and A/B results

function renderAbnormal(log) {
  setText($("abnormal-total"), "abnormal_total", { count: log.total });
  fillTable(
    "abnormal",
    log.entries.map((entry) => ({
      cells: [
        localTime(entry.paid_at),
        Object.assign(document.createElement("code"), {
          textContent: shortId(entry.order),
          title: entry.order,
        }),
        networkOf(entry.chain_id),
        entry.reasons.map((reason) => t(`reason_${reason}`)).join(", "),
        translated(`state_${entry.status}`),
        `${entry.attempts.failed}/${entry.attempts.total}`,
        entry.attempts.last_error ?? entry.refund_reason ?? seconds(entry.latency_seconds),
      ],
    })),
  );
}

function renderTemplates(results) {
  fillTable(
    "templates",
    results.results.map((row) => ({
      cells: [
        row.channel,
        row.variant,
        String(row.sent),
        percent(row.success_rate),
        String(row.orders),
        percent(row.come_back_rate),
      ],
    })),
  );
}

// ------------------------------------------------------------------ loading

const RENDER = {
  efficiency: renderEfficiency,
  sales: renderSales,
  abnormal: renderAbnormal,
  templates: renderTemplates,
};

async function loadFigure(name) {
  figures[name] = await api(`/api/merchant/stats/${name}?${since()}`);
  RENDER[name](figures[name]);
}

function refreshFigures() {
  return Promise.all(Object.keys(RENDER).map(loadFigure));
}

async function loadStock() {
  stock.clear();
  for (const level of await api("/api/merchant/stats/stock")) stock.set(level.product_id, level);
  renderStock();
}

async function loadOrders() {
  const page = await api(`/api/merchant/orders?limit=${SHOWN_ORDERS}`);
  orders.clear();
  for (const order of page.orders) orders.set(order.order, order);
  renderOrders();
}

function connectFeed() {
  const state = $("feed-state");
  liveSocket("/api/merchant/feed", {
    onOpen: () => {
      state.dataset.state = "live";
      setText(state, "feed_live");
      loadOrders(); // what happened while the feed was down
    },
    onEvent: (event) => (event.type === "stock" ? applyStockChange(event) : applyOrderEvent(event)),
    onClose: (closed) => {
      state.dataset.state = "down";
      setText(state, "feed_reconnecting");
      if (closed.code === 1008) showLogin(); // the session ended
      return closed.code !== 1008;
    },
  });
}

function showLogin() {
  $("dashboard").hidden = true;
  $("login").hidden = false;
}

async function showDashboard(username) {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("who").textContent = username;
  // The Funds panel first: its buttons are on screen from now on and must answer a click at once
  // (it reads the chain: not waited for).
  mountFunds();
  await loadStock(); // product names for the other panels
  await Promise.all([refreshFigures(), loadOrders()]);
  connectFeed();
}

async function logIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  try {
    const json = { username: form.elements.username.value, password: form.elements.password.value };
    const login = await api("/api/merchant/login", { method: "POST", json });
    form.reset();
    await showDashboard(login.username);
  } catch (error) {
    const key = error instanceof ApiError && error.status === 401 ? "login_failed" : "request_failed";
    setText($("login-message"), key, { reason: error.message });
  }
}

async function logOut() {
  await api("/api/merchant/logout", { method: "POST" });
  location.reload(); // drops the feed and every figure with the session
}

async function start() {
  try {
    const me = await api("/api/merchant/me");
    await showDashboard(me.username);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401))
      setText($("login-message"), "request_failed", { reason: error.message });
    showLogin();
  }
}

$("login-form").addEventListener("submit", logIn);
$("logout").addEventListener("click", logOut);
$("import-form").addEventListener("submit", importKeys);
$("window").addEventListener("change", refreshFigures);
onLanguageChange(() => {
  for (const [name, figure] of Object.entries(figures)) RENDER[name](figure); // the charts' labels
});
start();
