// What the buyer's browser remembers: each order's secret token and quote (localStorage, so the
// order page still opens the order after a reload or a restart), and a wallet session
// (sessionStorage: it ends with the tab).

const ORDERS = "liandong:orders";
const SESSION = "liandong:buyer-session";

function read(storage, key, fallback) {
  try {
    return JSON.parse(storage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

/** Every order this browser quoted: {orderId: {token, quote, signature, product, createdAt, txHash?}}. */
export function savedOrders() {
  return read(localStorage, ORDERS, {});
}

export function savedOrder(orderId) {
  return savedOrders()[orderId] ?? null;
}

export function saveOrder(orderId, entry) {
  localStorage.setItem(ORDERS, JSON.stringify({ ...savedOrders(), [orderId]: entry }));
}

export function buyerSession() {
  const session = read(sessionStorage, SESSION, null);
  return session && Date.parse(session.expires_at) > Date.now() ? session : null;
}

export function saveBuyerSession(session) {
  if (session) sessionStorage.setItem(SESSION, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION);
}
