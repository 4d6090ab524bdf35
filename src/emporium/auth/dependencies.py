"""Typed authentication dependencies: the only way endpoints learn who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from emporium.auth.service import user_for_token
from emporium.kit.db import ReadSessionDep
from emporium.kit.errors import Forbidden, Unauthorized
from emporium.models import Role, User

_bearer = HTTPBearer(auto_error=False, description="API token: `Authorization: Bearer <token>`")


async def get_optional_user(
    session: ReadSessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    if credentials is None:
        return None
    user = await user_for_token(session, credentials.credentials)
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
