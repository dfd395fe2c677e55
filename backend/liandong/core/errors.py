"""The one root of the errors the shop raises for a caller, and the few kinds a caller tells apart.

A caller (a route's client, a command's user) needs three things from a refusal: its HTTP `status`,
a short stable `code` and a message it can show (never a key or a secret); a few also carry headers
(429's Retry-After). Every error that reaches a caller is a `LiandongError` of one kind below, so
one exception handler (`liandong.api.app`) answers for every route and one group class
(`liandong.cli.common.Commands`) ends every command, where each route and command used to decide
for itself. A module's errors subclass a kind (`class OrderAdminError(ConflictError)`); a case
answered otherwise is a subclass naming its own kind first (`class OrderNotFoundError(NotFoundError,
OrderAdminError)`: the first kind's status wins), never a test on the message. `LiandongError`
itself is the shop's own failure (a vault key that does not decrypt): the API answers it as any
unexpected error, its message only in the log. Errors that never leave their module (a channel
handing over to the next) stay plain exceptions.
"""

from __future__ import annotations

import math
from typing import ClassVar


class LiandongError(Exception):
    """The root; raised as itself (or by a family of no kind), the shop's own failure."""

    status: ClassVar[int] = 500
    """The HTTP status that answers it."""
    code: ClassVar[str] = "internal"
    """A short name that stays when the message is reworded."""

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the message."""
        return {}


class UnauthorizedError(LiandongError):
    """Not authenticated: no credentials, or ones that are wrong, unknown or expired."""

    status = 401
    code = "unauthorized"
    challenge: ClassVar[str | None] = None
    """The scheme a `WWW-Authenticate` header names, for the credentials that prove a caller."""

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.challenge is None else {"WWW-Authenticate": self.challenge}


class ForbiddenError(LiandongError):
    """Authenticated, but these credentials may not do this."""

    status = 403
    code = "forbidden"


class NotFoundError(LiandongError):
    status = 404
    code = "not_found"


class RequestTimeoutError(LiandongError):
    status = 408
    code = "request_timeout"


class ConflictError(LiandongError):
    """Not in the state the request needs (already refunded, not delivered yet, taken)."""

    status = 409
    code = "conflict"


class TooLargeError(LiandongError):
    status = 413
    code = "too_large"


class InvalidError(LiandongError):
    """The request cannot be done as asked; the message says what to change."""

    status = 422
    code = "invalid"


class TooManyRequestsError(LiandongError):
    """Refused for now: the caller may try again after `retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, retry_after: float, message: str) -> None:
        """`message` may name `{seconds}`: `retry_after` in whole seconds, at least 1."""
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message.format(seconds=self.retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UnavailableError(LiandongError):
    """Something the shop depends on (the chain) cannot be reached or read now."""

    status = 503
    code = "unavailable"
