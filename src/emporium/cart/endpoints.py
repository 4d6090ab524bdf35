from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, FastAPI, Request, Response, status

from emporium.auth.dependencies import SECURED, OptionalUser, optional_tx_user
from emporium.cart import schemas
from emporium.cart import service as cart
from emporium.catalog.endpoints import ProductId
from emporium.catalog.errors import ProductNotFound
from emporium.config import Settings
from emporium.inventory.reservations import InsufficientStock
from emporium.kit.db import SessionDep, transaction
from emporium.kit.errors import Unauthorized
from emporium.kit.routing import DirectRoute, caller_first
from emporium.kit.sql import Sql
from emporium.models import User

router = APIRouter(prefix="/cart", tags=["cart"])
# Add to cart, the busiest write, on a DirectRoute (kit/routing.py): included first.
direct_router = APIRouter(prefix="/cart", tags=["cart"], route_class=DirectRoute)

GUEST_COOKIE_MAX_AGE = 30 * 24 * 3600


async def cart_owner(
    user: OptionalUser,
    emporium_cart: Annotated[str | None, Cookie(max_length=128)] = None,
) -> cart.CartOwner:
    # A signed-in user's cart is theirs alone; the guest cookie is merged at login.
    if user is not None:
        return cart.CartOwner(user=user)
    return cart.CartOwner(user=None, guest_token=emporium_cart)


Owner = Annotated[cart.CartOwner, Depends(cart_owner)]


@dataclass(frozen=True)
class CartUnit:
    """Add to cart's unit of work and its caller (None for a guest)."""

    user: User | None
    db: Sql


@asynccontextmanager
async def cart_unit(request: Request) -> AsyncIterator[CartUnit]:
    """The request's unit of work, with the caller read in it before the body is, as a
    dependency would be; it commits when the endpoint is done, before the answer goes
    out."""
    async with transaction(request.app.state.pool, lazy=True) as db:
        yield CartUnit(await optional_tx_user(request, db), db)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _ttl(request: Request) -> timedelta:
    return timedelta(seconds=_settings(request).reservation_ttl_seconds)


def _set_guest_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        cart.CART_COOKIE,
        token,
        max_age=GUEST_COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=_settings(request).cookie_secure,
    )


@router.get("", response_model=schemas.CartView, responses=Unauthorized.responses())
async def get_cart(request: Request, session: SessionDep, owner: Owner) -> schemas.CartView:
    """The caller's cart. Viewing it extends its reservations."""
    return await cart.view(session, owner, ttl=_ttl(request))


@direct_router.post(
    "/items",
    response_model=schemas.CartView,
    responses={
        **Unauthorized.responses(),
        **ProductNotFound.responses(),
        **InsufficientStock.responses(),
    },
    openapi_extra=SECURED,
)
@caller_first(cart_unit)
async def add_item(
    request: Request,
    body: schemas.CartItemAdd,
    emporium_cart: Annotated[str | None, Cookie(max_length=128)] = None,
) -> Response:
    """Add units of a product; they are reserved until the cart is left untouched too long.
    Short of stock, the 409's ``available`` is how many units can still be added."""
    unit: CartUnit = request.state.caller
    owner = cart.CartOwner(user=unit.user, guest_token=None if unit.user else emporium_cart)
    result, token = await cart.add_item(
        unit.db, owner, body.product_id, body.quantity, ttl=_ttl(request)
    )
    response = Response(result.model_dump_json(), media_type="application/json")
    if token is not None:
        _set_guest_cookie(request, response, token)
    # A reservation changes the product page's availability: the outbox's stock event
    # drops its cached copy a few tens of milliseconds after commit (search indexer),
    # which spares every cart change a Valkey round trip of its own.
    return response


@router.patch(
    "/items/{product_id}",
    response_model=schemas.CartView,
    responses={
        **Unauthorized.responses(),
        **cart.CartItemNotFound.responses(),
        **InsufficientStock.responses(),
    },
)
async def update_item(
    request: Request,
    session: SessionDep,
    owner: Owner,
    product_id: ProductId,
    body: schemas.CartItemUpdate,
) -> schemas.CartView:
    """Set a line's quantity (1-1000); use DELETE to remove it. Short of stock, the 409's
    ``available`` is the most the line can be set to, its own held units included."""
    return await cart.update_item(session, owner, product_id, body.quantity, ttl=_ttl(request))


@router.delete(
    "/items/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**Unauthorized.responses(), **cart.CartItemNotFound.responses()},
)
async def remove_item(
    request: Request, session: SessionDep, owner: Owner, product_id: ProductId
) -> Response:
    await cart.remove_item(session, owner, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def install(app: FastAPI) -> None:
    """Register the cart's login hook (merging a guest cart into the user's)."""
    hooks = getattr(app.state, "on_login", None)
    if hooks is None:
        hooks = app.state.on_login = []
    if cart.merge_guest_cart not in hooks:
        hooks.append(cart.merge_guest_cart)
