// The storefront: "Buy" connects the wallet and asks the shop for a quote bound to it (signed), keeps the order's secret token in this
// browser and opens the order page, where the wallet pays. A shop on several chains has each card
// choose the network (its prices list that network's tokens only); "Buy" then moves the wallet to
// it (adding it when the wallet does not know it) and asks for that chain's quote.
import { ApiError, api } from "./api.js";
import { setText } from "./i18n.js";
import { saveOrder, savedOrders } from "./storage.js";
import { Problem, REJECTED, connect, currentChain, switchChain } from "./wallet.js";

async function buy(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".message");
  const button = form.querySelector("button[type=submit]");
  const fields = new FormData(form);
  const request = {
    product_id: Number(form.dataset.product),
    quantity: Number(fields.get("quantity")),
    token: fields.get("token"),
  };
  if (fields.get("email")) request.email = fields.get("email");
  if (fields.has("chain")) request.chain_id = Number(fields.get("chain"));
  button.disabled = true;
  try {
    // The quote names the wallet that will pay it: only that wallet can use it.
    request.buyer = await connect();
    if (request.chain_id && (await currentChain()) !== request.chain_id) await switchChain(request.chain_id);
  } catch (error) {
    if (error instanceof Problem) setText(message, error.key, error.vars);
    else if (error?.code === REJECTED) setText(message, "rejected");
    else setText(message, "request_failed", { reason: error.message });
    button.disabled = false;
    return;
  }
  setText(message, "quoting");
  try {
    const issued = await api("/api/quotes", { method: "POST", json: request });
    saveOrder(issued.order, {
      token: issued.access_token,
      quote: issued.quote,
      signature: issued.signature,
      product: form.dataset.name,
      createdAt: Date.now(),
    });
    location.assign(`/orders/${issued.order}`);
  } catch (error) {
    const reasons = { 409: "sold_out_now", 429: "too_many_requests", 404: "not_for_sale" };
    if (error instanceof ApiError && error.status in reasons) setText(message, reasons[error.status]);
    else setText(message, "request_failed", { reason: error.message });
    button.disabled = false;
  }
}

/** This browser's orders, newest first: their tokens are here, so are the links back to them. */
function listRecentOrders() {
  const orders = Object.entries(savedOrders()).sort(([, a], [, b]) => b.createdAt - a.createdAt);
  const section = document.getElementById("recent");
  const list = section.querySelector("ul");
  for (const [orderId, order] of orders.slice(0, 10)) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/orders/${orderId}`;
    link.textContent = `${order.product} · ${new Date(order.createdAt).toLocaleString()}`;
    item.append(link);
    list.append(item);
  }
  section.hidden = orders.length === 0;
}

/** Offers the chosen network's prices only, the first of them chosen. */
function showNetworkPrices(form) {
  const options = [...form.elements.token.options];
  for (const option of options) {
    option.hidden = option.disabled = option.dataset.chain !== form.elements.chain.value;
  }
  const first = options.find((option) => !option.disabled);
  if (first) first.selected = true;
}

for (const form of document.querySelectorAll("form.buy")) {
  form.addEventListener("submit", buy);
  if (!form.elements.chain) continue; // a shop on one chain
  form.elements.chain.addEventListener("change", () => showNetworkPrices(form));
  showNetworkPrices(form);
}
listRecentOrders();
