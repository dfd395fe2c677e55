// The storefront: "Buy" connects the wallet and asks the shop for a quote bound to it (signed), keeps the order's secret token in this
// browser and opens the order page, where the wallet pays.
import { ApiError, api } from "./api.js";
import { setText } from "./i18n.js";
import { saveOrder, savedOrders } from "./storage.js";
import { Problem, REJECTED, connect } from "./wallet.js";

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
  button.disabled = true;
  try {
    // The quote names the wallet that will pay it: only that wallet can use it.
    request.buyer = await connect();
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

for (const form of document.querySelectorAll("form.buy")) form.addEventListener("submit", buy);
listRecentOrders();
