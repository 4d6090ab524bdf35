"""Typed authentication dependencies: the only way endpoints learn who is calling.

Credentials come from ``Authorization: Bearer <token>`` or the ``emporium_session``
cookie (the header wins when both are sent). A login session's token carries the
``ses_`` prefix and is looked up in Valkey; any other bearer value is an API token,
looked up in the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from emporium.accounts.sessions import SESSION_COOKIE, is_session_token, session_store
from emporium.auth.service import cached_token_user, user_by_id, user_for_token
from emporium.kit.db import ReadSessionDep, transaction
from emporium.kit.errors import Forbidden, Unauthorized
from emporium.kit.sql import Sql
from emporium.models import Role, User

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Session token from `POST /api/v1/auth/login`, or an API token",
)
session_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="Browser session set by login"
)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
SessionCookie = Annotated[str | None, Depends(session_cookie_scheme)]

# The hot endpoints read the credentials through the schemes directly: each dependency
# costs FastAPI tens of microseconds per request to solve, more than the reading itself.
# Their routes declare the schemes with this instead.
SECURED: dict[str, Any] = {"security": [{"HTTPBearer": []}, {"APIKeyCookie": []}]}


async def credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None, str | None]:
    """The bearer credentials and the session cookie, as the two schemes read them."""
    return await bearer_scheme(request), await session_cookie_scheme(request)


async def get_optional_user(
    request: Request, session: ReadSessionDep, credentials: Bearer, cookie: SessionCookie
) -> User | None:
    return await identify(request, await Sql.of(session), credentials, cookie)


async def optional_tx_user(request: Request, db: Sql) -> User | None:
    """The caller, read in the request's plain-SQL unit of work; routes using it declare
    ``SECURED``."""
    return await identify(request, db, *await credentials(request))


async def get_standalone_user(request: Request) -> User:
    """The caller, read on a connection given back at once: for checkout, which runs
    its own units of work on its own pool and must not hold a connection meanwhile.
    Routes using it declare ``SECURED``."""
    bearer, cookie = await credentials(request)
    if bearer is not None and not is_session_token(bearer.credentials):
        # A returning API client's user is cached: no connection to take at all.
        cached = cached_token_user(bearer.credentials, request.app.state.user_cache)
        if cached is not None:
            return cached
    async with transaction(request.app.state.checkout_pool, single=True) as db:
        user = await identify(request, db, bearer, cookie)
    if user is None:
        raise Unauthorized("authentication required")
    return user


@asynccontextmanager
async def checkout_caller(request: Request) -> AsyncIterator[User]:
    """``get_standalone_user`` for a DirectRoute's ``caller_first``."""
    yield await get_standalone_user(request)


async def identify(
    request: Request,
    db: Sql,
    credentials: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> User | None:
    token = credentials.credentials if credentials is not None else cookie
    if not token:
        return None
    user: User | None = None
    if is_session_token(token):
        store = session_store(request)
        user_id = await store.user_id(token) if store is not None else None
        if user_id is not None:
            user = await user_by_id(db, user_id, request.app.state.user_cache)
    elif credentials is not None:
        # Only a header may carry an API token; the cookie is for sessions alone.
        user = await user_for_token(db, token, request.app.state.user_cache)
    if user is None:
        raise Unauthorized("invalid or expired token")
    return user


async def get_current_user(
    user: Annotated[User | None, Depends(get_optional_user)],
) -> User:
    if user is None:
        raise Unauthorized("authentication required")
    return user


class RoleRequired:
    def __init__(self, *roles: Role) -> None:
        self.roles = {r.value for r in roles}

    async def __call__(self, user: Annotated[User, Depends(get_current_user)]) -> User:
        if user.role not in self.roles:
            raise Forbidden(f"requires role: {', '.join(sorted(self.roles))}")
        return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]
CatalogWriter = Annotated[User, Depends(RoleRequired(Role.seller, Role.admin))]
Admin = Annotated[User, Depends(RoleRequired(Role.admin))]
