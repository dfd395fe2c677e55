// The shop's API from the pages: JSON requests with readable errors, and live WebSockets that
// reconnect by themselves.

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }
}

/** FastAPI's `detail`: a sentence, or a list of validation errors. */
function detailOf(body, status) {
  const detail = body?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((error) => error.msg).join("; ");
  return `HTTP ${status}`;
}

const MAX_WAIT = 120; // seconds: a Retry-After beyond this is waited in steps of it

function retryAfterOf(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(Math.ceil(seconds), MAX_WAIT) : 5;
}

/**
 * A JSON request to the shop. With `onWait`, a 429 is waited out as its Retry-After says and the
 * request tried again (up to `retries` times): `onWait(seconds)` lets the page say so, and
 * `onWait(0)` that it goes on.
 */
export async function api(path, { method = "GET", json, body, headers = {}, onWait = null, retries = 10 } = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, {
      method,
      headers: json === undefined ? headers : { "Content-Type": "application/json", ...headers },
      body: json === undefined ? body : JSON.stringify(json),
      credentials: "same-origin",
      referrerPolicy: "same-origin",
    });
    if (response.status === 429 && onWait && attempt < retries) {
      const seconds = retryAfterOf(response);
      onWait(seconds);
      await sleep(seconds * 1000);
      onWait(0);
      continue;
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null; // a proxy's HTML error page: the status says enough
    }
    if (!response.ok) {
      const wait = response.status === 429 ? retryAfterOf(response) : null;
      throw new ApiError(response.status, detailOf(data, response.status), wait);
    }
    return data;
  }
}

/**
 * Opens a WebSocket on the shop and keeps it open: after a drop it reconnects with backoff and
 * calls `onOpen` again, so the page can catch up on what it missed. `hello()` gives the first
 * message (the proof an order stream needs) or null when there is none yet: the socket then waits
 * for `reconnect()`. `onClose` returning false stops the reconnecting (for example when the server
 * refused the login). Returns `{send, reconnect}`; `send` drops a message while the socket is down.
 */
export function liveSocket(path, { onEvent, onOpen = () => {}, onClose = () => true, hello = null }) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  let delay = 1000;
  let socket = null;
  let timer = null;
  const open = () => {
    timer = null;
    const first = hello ? hello() : undefined;
    if (first === null) return; // nothing to prove the stream with yet
    socket = new WebSocket(url);
    const current = socket;
    current.onopen = () => {
      delay = 1000;
      if (first !== undefined) current.send(JSON.stringify(first));
      onOpen();
    };
    current.onmessage = (message) => onEvent(JSON.parse(message.data));
    current.onclose = (closed) => {
      if (socket !== current) return; // replaced by reconnect()
      socket = null;
      if (onClose(closed) === false) return;
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
  return {
    send(message) {
      if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    },
    reconnect() {
      if (timer) clearTimeout(timer);
      const old = socket;
      socket = null;
      old?.close();
      delay = 1000;
      open();
    },
  };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
