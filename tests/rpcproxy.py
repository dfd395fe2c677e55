"""A fault-injecting JSON-RPC proxy in front of a real node (anvil), for the indexer's RPC tests.

`RpcProxy(upstream).start()` serves HTTP JSON-RPC on a free local port (`url`) from an aiohttp
server in its own thread, forwarding each request to `upstream`; `stop()` takes it down. What it
does wrong is set at run time through `faults` (a `Faults`, read on every request) and
`go_dead()` / `revive()`:

- `eth_getLogs` capped by block range (`logs_max_range`) and by result count
  (`logs_max_results`), refused with providers' own messages in turn (`RANGE_ERRORS`,
  `RESULT_ERRORS`), one of them as QuickNode's HTTP 413;
- HTTP 429 with `Retry-After` (`throttle_fraction` of requests, or the next `throttle_burst`);
- HTTP 5xx (`server_error_fraction` / `server_error_burst`, status from `server_error_statuses`);
- a head `lag` blocks behind (in `eth_blockNumber`, "latest"; blocks above it do not exist and
  `eth_getLogs` answers only up to it, as a node that has not seen them; `beyond_head` counts
  the requests for blocks above it);
- a head that goes backwards or repeats (`wobbly_head`: every other `eth_blockNumber`);
- slow: every answer held back `stall` seconds (a provider that times out);
- dead: the listening socket closed, so connections are refused, until `revive()`.

WebSocket is proxied only when the proxy is given a `ws_upstream` (its `ws_url` then forwards every
message both ways, one upstream socket per client socket); without one an upgrade gets 405, so a
node pointed here follows heads by polling. Its fault:

- dropped: every `ws_drop_every` seconds every client socket is closed, in turn with a close frame
  (1001 "going away", as a provider restarting) and by resetting the TCP connection (1006).

`stats` counts what was served and refused (the WebSocket's requests by method too, its
connections, drops and notifications); `logs_served` lists every `eth_getLogs` range answered, so a
test can check the indexer read every block.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from liandong.devtools.devnet import free_port

RANGE_ERRORS: list[tuple[int, dict[str, Any]]] = [
    # (HTTP status, JSON-RPC error): what providers answer to a range too wide
    (200, {"code": -32005, "message": "limit exceeded"}),  # BSC providers
    (200, {"code": -32602, "message": "query exceeds max block range {cap}"}),  # reth
    (200, {"code": -32000, "message": "exceed maximum block range: {cap}"}),  # BSC nodes
    (413, {"code": -32614, "message": "eth_getLogs is limited to a {cap} range"}),  # QuickNode
    (
        200,
        {  # Alchemy
            "code": -32602,
            "message": "Log response size exceeded. You can make eth_getLogs requests with up to a "
            "{cap} block range and no limit on the response size.",
        },
    ),
]
RESULT_ERRORS: list[dict[str, Any]] = [
    {"code": -32005, "message": "query returned more than {cap} results"},  # Infura, geth
    {"code": -32602, "message": "query exceeds max results {cap}, retry with a smaller range"},  # reth
    {"code": -32005, "message": "limit exceeded"},  # BSC providers
]


@dataclass
class Faults:
    """What the proxy does wrong; change any field while it runs."""

    logs_max_range: int | None = None
    logs_max_results: int | None = None
    throttle_fraction: float = 0.0
    throttle_burst: int = 0
    retry_after: str | None = "1"
    """The `Retry-After` a 429 carries (None: none)."""
    server_error_fraction: float = 0.0
    server_error_burst: int = 0
    server_error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    lag: int = 0
    wobbly_head: bool = False
    stall: float = 0.0
    """Seconds every answer is held back."""
    methods: frozenset[str] | None = None
    """Throttling and server errors only for these methods (None: every method)."""
    ws_drop_every: float | None = None
    """Seconds between two drops of every client WebSocket (None: never)."""


@dataclass
class ProxyStats:
    requests: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    server_errors: int = 0
    range_refused: int = 0
    results_refused: int = 0
    logs_served: list[tuple[int, int]] = field(default_factory=list)
    logs_sizes: list[list[Any]] = field(default_factory=list)
    """The logs of each answered `eth_getLogs`, in the order of `logs_served`."""
    beyond_head: int = 0
    """Requests for blocks above the lagging head (`eth_getBlockByNumber`, `eth_getLogs`)."""
    ws_connections: int = 0
    ws_dropped: int = 0
    ws_notifications: int = 0
    """Subscription messages (`eth_subscription`) passed on to clients."""


class RpcProxy:
    """The proxy; `start()` and `stop()` it (the test does, in a fixture)."""

    def __init__(self, upstream: str, *, ws_upstream: str | None = None, seed: int = 14) -> None:
        self.upstream = upstream
        self.ws_upstream = ws_upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.faults = Faults()
        self.stats = ProxyStats()
        self._chance = random.Random(seed)  # noqa: S311 - fault timing, seeded to replay
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rpc-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._served_heads: list[int] = []
        self._rotation = 0
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        """The client sockets open now, each with the request it was upgraded from."""
        self._dropper: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- control

    def start(self) -> RpcProxy:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def go_dead(self) -> None:
        """Close the listening socket: connections are refused until `revive()`."""
        self._run(self._close_site())

    def revive(self) -> None:
        self._run(self._open_site())

    def reset(self) -> None:
        """No faults any more."""
        self.faults = Faults()

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        if self.ws_upstream is not None:
            app.router.add_get("/", self._websocket)
            self._dropper = asyncio.create_task(self._drop_sockets())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        assert self._runner is not None
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    async def _close_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _shutdown(self) -> None:
        if self._dropper is not None:
            self._dropper.cancel()
        for socket in list(self._sockets):
            await socket.close()
        await self._close_site()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ---------------------------------------------------------------- serving

    def _draw(self, fraction: float) -> bool:
        with self._lock:
            return fraction > 0 and self._chance.random() < fraction

    def _take_burst(self, name: str) -> bool:
        with self._lock:
            left: int = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
            return False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        calls = body if isinstance(body, list) else [body]
        faults = self.faults
        if faults.stall:
            await asyncio.sleep(faults.stall)
        for call in calls:
            self.stats.requests[call.get("method", "?")] += 1
        methods = {call.get("method") for call in calls}
        targeted = faults.methods is None or bool(methods & faults.methods)
        if targeted and (self._take_burst("throttle_burst") or self._draw(faults.throttle_fraction)):
            self.stats.throttled += 1
            headers = {} if faults.retry_after is None else {"Retry-After": faults.retry_after}
            return web.Response(status=429, text="Too Many Requests", headers=headers)
        if targeted and (self._take_burst("server_error_burst") or self._draw(faults.server_error_fraction)):
            self.stats.server_errors += 1
            with self._lock:
                status = self._chance.choice(faults.server_error_statuses)
            return web.Response(status=status, text="upstream unavailable")
        answers: list[tuple[int, dict[str, Any]]] = [await self._answer(call, faults) for call in calls]
        status = max(answer[0] for answer in answers)
        payload: Any = [answer[1] for answer in answers] if isinstance(body, list) else answers[0][1]
        return web.json_response(payload, status=status)

    async def _forward(self, call: dict[str, Any]) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.post(self.upstream, json=call) as response:
            answer: dict[str, Any] = json.loads(await response.read())
            return answer

    async def _upstream_head(self) -> int:
        answer = await self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})
        return int(answer["result"], 16)

    def _error(self, call: dict[str, Any], error: dict[str, Any], cap: int) -> dict[str, Any]:
        message = str(error["message"]).format(cap=cap)
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": {**error, "message": message}}

    async def _answer(self, call: dict[str, Any], faults: Faults) -> tuple[int, dict[str, Any]]:
        method = call.get("method")
        params = call.get("params") or []
        if method == "eth_blockNumber" and (faults.lag or faults.wobbly_head):
            head = max(await self._upstream_head() - faults.lag, 0)
            with self._lock:
                served = self._served_heads
                if faults.wobbly_head and served and len(served) % 2 == 1:
                    head = max(served[-1] - self._chance.choice((0, 1, 2)), 0)  # repeat or go back
                served.append(head)
                del served[:-16]
            return 200, {"jsonrpc": "2.0", "id": call.get("id"), "result": hex(head)}
        if method == "eth_getBlockByNumber" and faults.lag and params:
            head = max(await self._upstream_head() - faults.lag, 0)
            tag = params[0]
            if tag in ("latest", "pending"):
                call = {**call, "params": [hex(head), *params[1:]]}
            elif isinstance(tag, str) and tag.startswith("0x") and int(tag, 16) > head:
                self.stats.beyond_head += 1
                return 200, {"jsonrpc": "2.0", "id": call.get("id"), "result": None}
        if method == "eth_getLogs" and params:
            return await self._logs(call, faults)
        return 200, await self._forward(call)

    async def _logs(self, call: dict[str, Any], faults: Faults) -> tuple[int, dict[str, Any]]:
        query = call["params"][0]
        first, last = int(query.get("fromBlock", "0x0"), 16), int(query.get("toBlock", "0x0"), 16)
        if faults.lag and last > (head := max(await self._upstream_head() - faults.lag, 0)):
            self.stats.beyond_head += 1  # answered as a node that has not seen those blocks
            if first > head:
                return 200, {"jsonrpc": "2.0", "id": call.get("id"), "result": []}
            call, last = {**call, "params": [{**query, "toBlock": hex(head)}]}, head
        if faults.logs_max_range is not None and last - first + 1 > faults.logs_max_range:
            self.stats.range_refused += 1
            with self._lock:
                status, error = RANGE_ERRORS[self._rotation % len(RANGE_ERRORS)]
                self._rotation += 1
            return status, self._error(call, error, faults.logs_max_range)
        answer = await self._forward(call)
        found = answer.get("result")
        cap = faults.logs_max_results
        if cap is not None and isinstance(found, list) and len(found) > cap:
            self.stats.results_refused += 1
            with self._lock:
                error = RESULT_ERRORS[self._rotation % len(RESULT_ERRORS)]
                self._rotation += 1
            return 200, self._error(call, error, cap)
        if "result" in answer:
            self.stats.logs_served.append((first, last))
            self.stats.logs_sizes.append(found if isinstance(found, list) else [])
        return 200, answer

    # -------------------------------------------------------------- WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """One client socket, forwarded message by message to its own upstream socket."""
        assert self._session is not None
        assert self.ws_upstream is not None
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        self.stats.ws_connections += 1
        self._sockets[client] = request
        try:
            async with self._session.ws_connect(self.ws_upstream, max_msg_size=0) as upstream:
                pumps = [
                    asyncio.create_task(self._to_upstream(client, upstream)),
                    asyncio.create_task(self._to_client(upstream, client)),
                ]
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._sockets.pop(client, None)
            await client.close()
        return client

    async def _to_upstream(
        self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        async for message in client:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            calls = json.loads(message.data)
            for call in calls if isinstance(calls, list) else [calls]:
                self.stats.requests[call.get("method", "?")] += 1
            await upstream.send_str(message.data)

    async def _to_client(
        self, upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse
    ) -> None:
        async for message in upstream:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if '"eth_subscription"' in message.data:
                self.stats.ws_notifications += 1
            await client.send_str(message.data)

    async def _drop_sockets(self) -> None:
        """Every `faults.ws_drop_every` seconds, every client socket closed: a close frame and a
        reset TCP connection in turn."""
        drops = 0
        while True:
            every = self.faults.ws_drop_every
            await asyncio.sleep(every if every is not None else 0.1)
            if every is None or self.faults.ws_drop_every is None:
                continue
            for socket, request in list(self._sockets.items()):
                self.stats.ws_dropped += 1
                drops += 1
                self._sockets.pop(socket, None)
                if drops % 2:
                    await socket.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"going away")
                elif request.transport is not None:
                    request.transport.abort()
