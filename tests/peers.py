"""Real protocol peers for the channel tests: an SMTP server (aiosmtpd) and an HTTP endpoint.

Fixtures `smtp` and `endpoint` (in tests/conftest.py) start them on free local ports and stop them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from liandong.devtools.devnet import free_port

# --- an SMTP server ---------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: keeps what it receives and the credentials it was given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"shop", b"pw"))

    def message(self, index: int = 0) -> EmailMessage:
        content = self.envelopes[index].original_content
        assert content is not None
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def start_smtp(inbox: Inbox) -> Controller:
    """An SMTP server on a free port delivering into `inbox`; `stop()` it to take it down."""
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    return controller


# --- an HTTP endpoint (webhook receiver, SMS gateway) -----------------------------------------


@dataclass
class Request:
    path: str
    headers: Any
    body: bytes


class Endpoint:
    """A real HTTP server in a thread: records each POST, answers `status` after `delay` seconds."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status = 200
        self.delay = 0.0
        self.released = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.requests.append(Request(self.path, self.headers, body))
                endpoint.released.wait(endpoint.delay)
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
