"""Issue 12, item 4: bodies, WebSockets and slow clients are bounded."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from liandong.api.app import create_app, server_limits
from liandong.devtools.devnet import free_port
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import Api, ApiFactory

THIRTY_MB = 30 * 1024 * 1024


@contextlib.contextmanager
def serve(api: Api) -> Iterator[int]:
    """The app on a real uvicorn server, configured as the node configures it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(api.context),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        **server_limits(api.context.settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _answer(conn: socket.socket, timeout: float) -> bytes:
    ready, _, _ = select.select([conn], [], [], timeout)
    return conn.recv(65536) if ready else b""


def test_a_30_mb_json_body_to_quotes_is_refused_with_413_without_being_read(api: Api) -> None:
    with serve(api) as port:
        # Declared: the answer comes after the headers and a first 64 KiB, the rest never sent.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /api/quotes HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {THIRTY_MB}\r\n\r\n".encode()
                + b'{"product_id": 1, "pad": "'
                + b"x" * 65536
            )
            answer = _answer(conn, 5)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request bodies up to 65536 bytes" in answer

        # Chunked, no length said: cut off once past the cap, long before 30 MB.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /api/quotes HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
            sent, answer = 0, b""
            conn.setblocking(False)
            while sent < THIRTY_MB and not answer:
                with contextlib.suppress(BlockingIOError):
                    sent += conn.send(chunk)
                answer = _answer(conn, 0.01)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 2 * 1024 * 1024, f"the server read {sent} bytes before refusing"


def test_the_key_import_keeps_its_own_streamed_cap_above_the_json_one(api: Api) -> None:
    headers = api.merchant_token("products:write", "keys:import")
    product = api.add_product("big-file", [], headers)
    keys = "\n".join(f"KEY-{n:07}" for n in range(10_000))  # ~120 KB, past the 64 KiB JSON cap
    answer = api.client.post(
        f"/api/merchant/products/{product}/keys",
        content=keys,
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert answer.status_code in (201, 202), answer.text


def test_too_many_websockets_from_one_client_or_in_all_are_refused(api_factory: ApiFactory) -> None:
    with api_factory(ws_max_per_client=2, ws_max_total=3, ws_auth_seconds=30) as api:
        path = "/api/orders/0x" + "ab" * 32 + "/events"
        with api.client.websocket_connect(path), api.client.websocket_connect(path):
            with pytest.raises(WebSocketDisconnect) as refused:
                api.client.websocket_connect(path).__enter__()
            assert refused.value.code == 1013
            assert api.context.sockets.count == 2
            # The total cap, whoever asks: one more from elsewhere fits, the next does not.
            assert api.context.sockets.open("203.0.113.9")
            assert not api.context.sockets.open("203.0.113.10")
            api.context.sockets.close("203.0.113.9")
        deadline = time.monotonic() + 5
        while api.context.sockets.count:  # closed sockets give their slots back
            assert time.monotonic() < deadline, api.context.sockets.count
            time.sleep(0.02)
