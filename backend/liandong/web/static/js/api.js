// The shop's API from the pages: JSON requests with readable errors, and live WebSockets that
// reconnect by themselves.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** FastAPI's `detail`: a sentence, or a list of validation errors. */
function detailOf(body, status) {
  const detail = body?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((error) => error.msg).join("; ");
  return `HTTP ${status}`;
}

export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const response = await fetch(path, {
    method,
    headers: json === undefined ? headers : { "Content-Type": "application/json", ...headers },
    body: json === undefined ? body : JSON.stringify(json),
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // a proxy's HTML error page: the status says enough
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(data, response.status));
  return data;
}

/**
 * Opens a WebSocket on the shop and keeps it open: after a drop it reconnects with backoff and
 * calls `onOpen` again, so the page can catch up on what it missed. `onClose` returning false
 * stops the reconnecting (for example when the server refused the login).
 */
export function liveSocket(path, { onEvent, onOpen = () => {}, onClose = () => true }) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  let delay = 1000;
  const open = () => {
    const socket = new WebSocket(url);
    socket.onopen = () => {
      delay = 1000;
      onOpen();
    };
    socket.onmessage = (message) => onEvent(JSON.parse(message.data));
    socket.onclose = (closed) => {
      if (onClose(closed) === false) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
