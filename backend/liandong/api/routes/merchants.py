"""The merchant's account (login, API tokens) and delivery settings (channel order, templates).

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.security import APIKeyCookie
from pydantic import BaseModel, Field

from liandong.api.deps import (
    SESSION_COOKIE,
    MerchantIdentity,
    RowId,
    Shop,
    check_origin,
    merchant,
    signin_rate,
)
from liandong.core.errors import NotFoundError
from liandong.services import merchant_auth, messages
from liandong.services.merchant_auth import SCOPES
from liandong.store.models import ApiToken

router = APIRouter(prefix="/api/merchant", tags=["merchant: account and channels"])

Account = Annotated[MerchantIdentity, Depends(merchant("orders:read"))]
"""Reading routes take any valid login; `orders:read` is the least a token can hold."""
Dashboard = Annotated[MerchantIdentity, Depends(merchant(None))]
"""The account itself (password, API tokens): a dashboard session only, never an API token, so a
leaked integration token cannot mint itself a stronger one or revoke the others."""
ChannelsWrite = Annotated[MerchantIdentity, Depends(merchant("channels:write"))]
VariantName = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
_session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    username: str
    expires_at: datetime


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES), description=f"Of: {sorted(SCOPES)}")


class TokenView(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenView):
    token: str = Field(description="The token itself: shown once, store it now.")


class ChannelView(BaseModel):
    name: str
    position: int
    enabled: bool
    configured: bool


class ChannelOrder(BaseModel):
    order: list[str] = Field(
        max_length=8, description="Channels to use, in order; the others are switched off."
    )


def _token_view(token: ApiToken) -> TokenView:
    assert token.id is not None
    return TokenView(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        scopes=token.scopes.split(),
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.post("/login", dependencies=[Depends(signin_rate)], responses={401: {}, 429: {}})
def login(request: LoginRequest, response: Response, context: Shop) -> LoginResponse:
    """Starts a dashboard session (an HttpOnly, SameSite=Strict cookie)."""
    hours = context.settings.merchant_session_hours
    with context.session() as session:
        token, expires_at = merchant_auth.login(
            session,
            request.username,
            request.password,
            hours,
            lockout_after=context.settings.login_lockout_after,
            lockout_seconds=context.settings.login_lockout_seconds,
        )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        httponly=True,
        samesite="strict",
        secure=context.settings.resolved_public_url.startswith("https://"),
    )
    return LoginResponse(username=request.username.strip().lower(), expires_at=expires_at)


@router.post("/logout", status_code=204)
def logout(
    request: Request,
    response: Response,
    context: Shop,
    cookie: Annotated[str | None, Depends(_session_cookie)],
) -> None:
    if cookie:
        check_origin(request, context.settings)
        with context.session() as session:
            merchant_auth.logout(session, cookie)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me")
def me(identity: Account) -> dict[str, str | int]:
    return {"id": identity.id, "username": identity.username}


@router.post("/password", status_code=204, responses={401: {}, 422: {}})
def change_password(
    request: PasswordChange,
    identity: Dashboard,
    context: Shop,
    cookie: Annotated[str | None, Depends(_session_cookie)],
) -> None:
    """Changes the password; every other dashboard session ends (API tokens stay valid)."""
    with context.session() as session:
        merchant_auth.change_password(
            session, identity.id, request.current_password, request.new_password, keep_session=cookie
        )


@router.get("/tokens")
def list_tokens(identity: Dashboard, context: Shop) -> list[TokenView]:
    with context.session() as session:
        return [_token_view(token) for token in merchant_auth.list_api_tokens(session, identity.id)]


@router.post("/tokens", status_code=201, responses={403: {}, 422: {}})
def create_token(request: TokenRequest, identity: Dashboard, context: Shop) -> NewToken:
    """A token for an integration, limited to `scopes` (within the creator's); only its hash is kept."""
    with context.session() as session:
        plaintext, token = merchant_auth.create_api_token(
            session, identity.id, request.name, request.scopes, allowed=identity.scopes
        )
    return NewToken(**_token_view(token).model_dump(), token=plaintext)


@router.delete("/tokens/{token_id}", responses={403: {}, 404: {}})
def revoke_token(token_id: RowId, identity: Dashboard, context: Shop) -> TokenView:
    with context.session() as session:
        revoked = merchant_auth.revoke_api_token(session, identity.id, token_id, allowed=identity.scopes)
        return _token_view(revoked)


@router.get("/channels")
def list_channels(_: Account, context: Shop) -> list[ChannelView]:
    """The delivery channels in the order they are tried; `configured` says whether settings
    give a channel what it needs (servers, secrets)."""
    with context.session() as session:
        states = context.channels.describe(session)
    return [ChannelView(**dataclasses.asdict(state)) for state in states]


@router.put("/channels", responses={422: {}})
def order_channels(request: ChannelOrder, _: ChannelsWrite, context: Shop) -> list[ChannelView]:
    """Sets which channels deliver and in what order; a failing channel hands over to the next."""
    with context.session() as session:
        context.channels.set_order(session, request.order)
        states = context.channels.describe(session)
    context.on_channels_changed()
    return [ChannelView(**dataclasses.asdict(state)) for state in states]


@router.get("/templates")
def list_templates(_: Account, context: Shop) -> list[messages.TemplateOut]:
    with context.session() as session:
        return messages.list_templates(session)


@router.put("/templates/{channel}/{variant}", responses={422: {}})
def save_template(
    channel: str,
    variant: VariantName,
    template: messages.TemplateIn,
    _: ChannelsWrite,
    context: Shop,
) -> messages.TemplateOut:
    """Creates or replaces a message variant; several active variants of a channel are an A/B test."""
    with context.session() as session:
        saved = messages.save_template(session, channel, variant, template)
    context.on_channels_changed()
    return saved


@router.delete("/templates/{channel}/{variant}", status_code=204, responses={404: {}})
def delete_template(channel: str, variant: str, _: ChannelsWrite, context: Shop) -> None:
    with context.session() as session:
        if not messages.delete_template(session, channel, variant):
            raise NotFoundError(f"no template {channel}/{variant}")
    context.on_channels_changed()
