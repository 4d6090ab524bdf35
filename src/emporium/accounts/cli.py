from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from emporium.accounts import schemas
from emporium.config import Settings, get_settings
from emporium.kit.errors import AppError
from emporium.kit.schemas import error_message
from emporium.models import Role

T = TypeVar("T")

users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)

_email: TypeAdapter[str] = TypeAdapter(schemas.Email)
_password: TypeAdapter[str] = TypeAdapter(schemas.NewPassword)
_name: TypeAdapter[str] = TypeAdapter(schemas.Name)


def _valid(label: str, adapter: TypeAdapter[str], value: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _fail(f"{label}: {error_message(exc.errors()[0])}") from exc


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(2)


PasswordOption = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="8-256 characters; prompted for when omitted",
    ),
]


def _run(job: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run an account job against the configured (or embedded) servers; a domain error
    exits with status 2 and its message."""
    from emporium.kit.logging import configure_logging

    configure_logging("WARNING", json=False)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(job(settings))
    except AppError as exc:
        raise _fail(str(exc.detail)) from exc


async def _create(
    settings: Settings, email: str, password: str, role: Role, name: str, seller_id: int | None
) -> int:
    from emporium.accounts import service
    from emporium.kit.db import UnitOfWork, open_database

    engine, maker = await open_database(settings)
    try:
        async with UnitOfWork(maker) as session:
            user = await service.create_user(
                session, email=email, password=password, role=role, name=name, seller_id=seller_id
            )
            created = {"email": user.email, "role": user.role, "seller_id": user.seller_id}
            service.record(session, user, "user.created", by_operator=True, new=created)
            return user.id
    finally:
        await engine.dispose()


@users_app.command()
def create(
    email: Annotated[str, typer.Argument(help="Login email (stored in lower case)")],
    password: PasswordOption,
    role: Annotated[Role, typer.Option(case_sensitive=False, help="Account role")],
    seller_id: Annotated[
        int | None, typer.Option(min=1, help="Seller the account acts for (seller role)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
) -> None:
    """Create an account (for example the first admin) and print its id."""
    email = _valid("email", _email, email)
    password = _valid("password", _password, password)
    shown = "" if name is None else _valid("name", _name, name)
    typer.echo(_run(lambda settings: _create(settings, email, password, role, shown, seller_id)))


async def _reset(settings: Settings, email: str, password: str) -> int:
    from emporium.accounts import service
    from emporium.accounts.sessions import SessionStore
    from emporium.kit.cache import Cache
    from emporium.kit.db import UnitOfWork, open_database
    from emporium.kit.embedded import valkey_url_or_embedded

    url, embedded = await valkey_url_or_embedded(settings.valkey_url, settings.valkey_dir)
    cache = Cache(url)
    engine, maker = await open_database(settings)
    try:
        async with UnitOfWork(maker) as session:
            user = await service.reset_password(session, email=email, new=password)
            # Before the commit: if Valkey fails, the password stays as it was.
            store = SessionStore(cache, settings.session_ttl_seconds)
            return await store.end_all(user.id)
    finally:
        await engine.dispose()
        await cache.close()
        if embedded is not None:
            embedded.stop()


@users_app.command("set-password")
def set_password(
    email: Annotated[str, typer.Argument(help="The account's login email")],
    password: PasswordOption,
) -> None:
    """Set an account's password (for a user who forgot it) and end its login sessions."""
    email = _valid("email", _email, email)
    password = _valid("password", _password, password)
    ended = _run(lambda settings: _reset(settings, email, password))
    typer.echo(f"Password set; {ended} login session(s) ended.")
