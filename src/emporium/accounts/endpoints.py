from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.accounts import schemas
from emporium.accounts import service as accounts
from emporium.accounts.sessions import (
    SESSION_COOKIE,
    SessionStore,
    SessionStoreUnavailable,
    session_store,
)
from emporium.accounts.throttle import (
    TooManyLoginAttempts,
    TooManyRegistrations,
    count_registration,
    login_throttle,
)
from emporium.auth.dependencies import (
    Bearer,
    CurrentUser,
    SessionCookie,
    bearer_scheme,
    session_cookie_scheme,
)
from emporium.config import Settings
from emporium.kit.db import SessionDep
from emporium.kit.errors import Unauthorized
from emporium.kit.logging import client_ip
from emporium.models import User

router = APIRouter(prefix="/auth", tags=["accounts"])

LoginHook = Callable[[AsyncSession, Request, User], Awaitable[None]]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "/register",
    response_model=schemas.UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={**accounts.EmailTaken.responses(), **TooManyRegistrations.responses()},
)
async def register(
    request: Request, session: SessionDep, body: schemas.RegisterRequest
) -> schemas.UserOut:
    """Create a customer account. It does not log in: call login next.

    Past the registrations allowed from one client address (20 an hour by default),
    429 ``too_many_registrations`` with ``Retry-After``.
    """
    await count_registration(request, client_ip.get())
    user = await accounts.register(
        session, email=body.email, password=body.password, name=body.name
    )
    return schemas.UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=schemas.LoginResponse,
    responses={
        **accounts.InvalidCredentials.responses(),
        **TooManyLoginAttempts.responses(),
        **SessionStoreUnavailable.responses(),
    },
)
async def login(
    request: Request, response: Response, session: SessionDep, body: schemas.LoginRequest
) -> schemas.LoginResponse:
    """Start a session: sets the ``emporium_session`` cookie and returns the same token
    for ``Authorization: Bearer``.

    Other packages react to a login through ``request.app.state.on_login``: a list of
    ``async (session, request, user) -> None`` callables, awaited in order after the
    credentials are accepted and inside the request's transaction (so a failing hook
    fails the login and rolls back its writes). Missing or empty means no hooks.

    Too many failed attempts for the email from this address or from anywhere, or
    attempts from this address, within a window answer 429 ``too_many_login_attempts``
    with ``Retry-After`` before the password is checked (accounts/throttle.py).
    """
    throttle = login_throttle(request)
    ip = client_ip.get()
    if throttle is not None:
        await throttle.attempt(body.email, ip)
    user = await accounts.authenticate(session, email=body.email, password=body.password)
    hooks: list[LoginHook] = getattr(request.app.state, "on_login", None) or []
    for hook in hooks:
        await hook(session, request, user)
    store = _store(request)
    # Created last: if anything above fails, no token was handed out.
    token = await store.create(user.id)
    if throttle is not None:
        await throttle.succeeded(body.email, ip)
    settings = _settings(request)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=store.ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    return schemas.LoginResponse(
        token=token, expires_in=store.ttl_seconds, user=schemas.UserOut.model_validate(user)
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SessionStoreUnavailable.responses(),
)
async def logout(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(session_cookie_scheme)],
) -> Response:
    """End the presented session (header or cookie) and clear the cookie.

    Idempotent: an unknown or expired session is not an error. API tokens are not revoked.
    """
    store = session_store(request)
    if store is not None:
        header = credentials.credentials if credentials is not None else None
        for token in {t for t in (header, cookie) if t}:
            await store.delete(token)
    return _cleared(request)


def _cleared(request: Request) -> Response:
    """A 204 that removes the session cookie."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_settings(request).cookie_secure,
    )
    return response


def _store(request: Request) -> SessionStore:
    store = session_store(request)
    if store is None:
        raise SessionStoreUnavailable("sessions are unavailable")
    return store


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **Unauthorized.responses(),
        **accounts.IncorrectPassword.responses(),
        **TooManyLoginAttempts.responses(),
        **SessionStoreUnavailable.responses(),
    },
)
async def change_password(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    body: schemas.PasswordChange,
    bearer: Bearer,
    cookie: SessionCookie,
) -> Response:
    """Change the caller's password, proving the current one (403
    ``incorrect_password`` otherwise).

    Every other login session of the account ends; the one making this request stays.
    API tokens are not affected. Attempts count against the same limits as logins to
    the account (429 ``too_many_login_attempts``), so a stolen session cannot be used
    to guess the password.
    """
    throttle = login_throttle(request)
    ip = client_ip.get()
    if throttle is not None:
        await throttle.attempt(user.email, ip)
    await accounts.change_password(
        session, user_id=user.id, current=body.current_password, new=body.new_password
    )
    # Ended before the commit: if Valkey fails, the change rolls back rather than
    # leaving sessions alive that the new password was meant to end.
    presented = bearer.credentials if bearer is not None else cookie
    await _store(request).end_all(user.id, keep=presented)
    if throttle is not None:
        await throttle.succeeded(user.email, ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**Unauthorized.responses(), **SessionStoreUnavailable.responses()},
)
async def logout_all(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """End every login session of the caller's account, this one included, and clear
    the cookie. API tokens are not revoked."""
    ended = await _store(request).end_all(user.id)
    accounts.record(session, user, "user.logged_out_everywhere", new={"sessions_ended": ended})
    return _cleared(request)


@router.get("/me", response_model=schemas.UserOut, responses=Unauthorized.responses())
async def me(user: CurrentUser) -> schemas.UserOut:
    return schemas.UserOut.model_validate(user)
