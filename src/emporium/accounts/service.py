"""Account use cases. Services flush, never commit: the caller owns the transaction."""

from __future__ import annotations

import asyncio
import secrets
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from emporium.models import Role, Seller, User

_hasher = PasswordHasher()


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class IncorrectPassword(Forbidden):
    code = "incorrect_password"


class UserNotFound(NotFound):
    code = "user_not_found"


class SellerNotFound(NotFound):
    code = "seller_not_found"


class SellerIdRequired(InvalidInput):
    code = "seller_id_required"


class SellerIdNotAllowed(InvalidInput):
    code = "seller_id_not_allowed"


@cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so both failures cost one argon2 verify.
    return _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        matched = _hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and stored is not None


async def by_email(session: AsyncSession, email: str) -> User | None:
    # Every write path stores emails lower-cased, so plain equality uses the unique index.
    return await session.scalar(select(User).where(User.email == email))


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role,
    name: str = "",
    seller_id: int | None = None,
) -> User:
    """A new account; ``email`` must already be normalised."""
    if role is Role.seller and seller_id is None:
        raise SellerIdRequired("the seller role needs a seller id")
    if role is not Role.seller and seller_id is not None:
        raise SellerIdNotAllowed("only sellers belong to a seller")
    if seller_id is not None and await session.get(Seller, seller_id) is None:
        raise SellerNotFound(f"seller {seller_id} does not exist")
    if await by_email(session, email) is not None:
        raise EmailTaken("an account with this email already exists")
    user = User(
        email=email,
        name=name,
        role=role.value,
        seller_id=seller_id,
        password_hash=await hash_password(password),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Lost a race with a concurrent registration of the same email.
        if "uq_users_email" in str(exc.orig):
            raise EmailTaken("an account with this email already exists") from exc
        raise
    return user


def record(
    session: AsyncSession,
    user: User,
    action: str,
    *,
    by_operator: bool = False,
    new: dict[str, Any] | None = None,
) -> None:
    """An audit row for something done to the account: by the user, or by an operator
    at the shell (no actor: the operator is not a user)."""
    audit.record(
        session,
        actor=None if by_operator else user,
        action=action,
        entity_type="user",
        entity_id=user.id,
        old=None,
        new=new,
    )


async def register(session: AsyncSession, *, email: str, password: str, name: str) -> User:
    user = await create_user(session, email=email, password=password, role=Role.customer, name=name)
    record(session, user, "user.registered", new={"email": user.email, "role": user.role})
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The user for these credentials, or InvalidCredentials (same error either way)."""
    user = await by_email(session, email)
    stored = user.password_hash if user is not None and user.password_hash else None
    if not await asyncio.to_thread(_verify, stored, password) or user is None or stored is None:
        raise InvalidCredentials("email or password is incorrect")
    if _hasher.check_needs_rehash(stored):
        user.password_hash = await hash_password(password)
    record(session, user, "user.logged_in")
    await session.flush()
    return user


async def change_password(session: AsyncSession, *, user_id: int, current: str, new: str) -> User:
    """Set a new password once the current one is proven; IncorrectPassword otherwise."""
    # Locked so that two changes at once cannot both prove the same old password.
    user = await session.get(User, user_id, with_for_update=True, populate_existing=True)
    stored = user.password_hash if user is not None and user.password_hash else None
    if user is None or stored is None or not await asyncio.to_thread(_verify, stored, current):
        raise IncorrectPassword("the current password is incorrect")
    user.password_hash = await hash_password(new)
    record(session, user, "user.password_changed")
    await session.flush()
    return user


async def reset_password(session: AsyncSession, *, email: str, new: str) -> User:
    """Set a new password without the old one: for an operator; ``email`` normalised."""
    user = await session.scalar(select(User).where(User.email == email).with_for_update())
    if user is None:
        raise UserNotFound("no account with this email")
    user.password_hash = await hash_password(new)
    record(session, user, "user.password_reset", by_operator=True)
    await session.flush()
    return user
