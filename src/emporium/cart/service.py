"""Cart use cases. Every change to a line reserves or releases its stock in the same
transaction; services flush, never commit.

A mutating request locks the cart row first, then slides (and so locks) the cart's
reservations before it touches stock: the lock order of emporium.inventory.reservations.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.cart import schemas
from emporium.cart.repository import CartRepository
from emporium.catalog.errors import ProductNotFound
from emporium.catalog.repository import ProductRepository
from emporium.inventory.gate import gate
from emporium.inventory.reservations import (
    InsufficientStock,
    note_reserved,
    refuse,
    refuse_if_sold_out,
    release,
    release_expired,
    release_units,
    reserve,
)
from emporium.kit.errors import InvalidInput, NotFound
from emporium.kit.gate import Kind, Rider, shared_failure
from emporium.kit.logging import client_ip, correlation_id
from emporium.kit.outbox import written
from emporium.kit.sql import Sql
from emporium.models import Cart, User

CART_COOKIE = "emporium_cart"
CENT = Decimal("0.01")


class CartItemNotFound(NotFound):
    code = "cart_item_not_found"


class QuantityLimitExceeded(InvalidInput):
    code = "quantity_limit_exceeded"


@dataclass(frozen=True)
class CartOwner:
    """Who the cart belongs to: the signed-in user, else the guest cookie's token."""

    user: User | None
    guest_token: str | None = None


def hash_cart_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _until(ttl: timedelta) -> datetime:
    return datetime.now(UTC) + ttl


async def _find(session: AsyncSession, owner: CartOwner) -> Cart | None:
    repo = CartRepository.from_session(session)
    if owner.user is not None:
        return await repo.find(user_id=owner.user.id, lock=True)
    if owner.guest_token:
        return await repo.find(token_hash=hash_cart_token(owner.guest_token), lock=True)
    return None


async def _require_active_product(session: AsyncSession, product_id: int) -> None:
    product = await ProductRepository.from_session(session).get(product_id)
    if product is None or not product.is_active:
        raise ProductNotFound(f"product {product_id} does not exist")


def _check_limit(quantity: int) -> None:
    if quantity > schemas.MAX_LINE_QUANTITY:
        raise QuantityLimitExceeded(
            f"a cart line holds at most {schemas.MAX_LINE_QUANTITY} units",
            max_quantity=schemas.MAX_LINE_QUANTITY,
        )


def empty_cart() -> schemas.CartView:
    return schemas.CartView(lines=[], subtotal=Decimal("0.00"), item_count=0)


def _line(
    product_id: int,
    title: str,
    unit_price: Decimal,
    quantity: int,
    reserved_until: datetime | None,
    available: int,
) -> schemas.CartLine:
    return schemas.CartLine(
        product_id=product_id,
        title=title,
        unit_price=unit_price,
        quantity=quantity,
        line_total=(unit_price * quantity).quantize(CENT),
        reserved_until=reserved_until,
        available=available,
    )


async def render(session: AsyncSession, cart_id: int) -> schemas.CartView:
    return _view([_line(*row) for row in await CartRepository.from_session(session).lines(cart_id)])


def _view(lines: list[schemas.CartLine]) -> schemas.CartView:
    return schemas.CartView(
        lines=lines,
        subtotal=sum((line.line_total for line in lines), Decimal("0.00")),
        item_count=sum(line.quantity for line in lines),
    )


async def view(session: AsyncSession, owner: CartOwner, *, ttl: timedelta) -> schemas.CartView:
    """The owner's cart; looking at it keeps its reservations alive."""
    cart = await _find(session, owner)
    if cart is None:
        return empty_cart()
    await CartRepository.from_session(session).slide(cart.id, _until(ttl))
    return await render(session, cart.id)


# The database function cart_add_item (migration 0004) does the whole change in one
# call: take the cart, slide its holds, check the product and the line limit, reserve,
# and return the lines. Outside a transaction it commits on its own, so the product's
# stock rows stay locked only for the database's own work.
ADD_ITEM_SQL = "SELECT cart_add_item($1, $2, $3, $4, $5, $6, $7, $8, $9)"

# The buyer let in takes up to this many of those queued behind it along, in one call of
# cart_add_items (migration 0009): a turn of a busy event loop costs more than a
# reservation in the database.
RIDERS = 15
ADD_ITEMS_SQL = "SELECT * FROM cart_add_items($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# What a call made for a buyer came to: its cart, or the error it raised.
_Outcome = dict[str, Any] | Exception

# The cart row is locked first, as by every change to a cart.
_SLIDE = """
WITH c AS MATERIALIZED (
    SELECT id FROM carts WHERE user_id = $1 OR guest_token_hash = $2 FOR UPDATE
)
UPDATE reservations SET reserved_until = $3 WHERE cart_id IN (SELECT id FROM c)
"""


async def add_item(
    unit: AsyncSession | Sql, owner: CartOwner, product_id: int, quantity: int, *, ttl: timedelta
) -> tuple[schemas.CartView, str | None]:
    """Add units to a line, reserving them; returns the cart and a new guest token if any."""
    db = await Sql.from_(unit)
    await refuse_if_sold_out(db, product_id, quantity)
    until = _until(ttl)
    # A fresh token, never the one the client sent: a client cannot choose its cart key.
    token = None if owner.user is not None else secrets.token_urlsafe(32)
    args = (
        owner.user.id if owner.user is not None else None,
        hash_cart_token(owner.guest_token) if owner.user is None and owner.guest_token else None,
        hash_cart_token(token) if token is not None else None,
        product_id,
        quantity,
        until,
        schemas.MAX_LINE_QUANTITY,
        correlation_id.get(),
        client_ip.get(),
    )
    if gate.busy(product_id):
        # The buyers ahead need connections more than a buyer waiting its turn does.
        await db.pause()
    # A buyer inside a transaction of its own cannot be served by another's call.
    alone = db.in_transaction
    async with gate.enter(product_id, None if alone else args) as turn:
        if turn.kind is Kind.WAVED:
            # A buyer ahead was turned away with nothing left while this one waited.
            raise refuse(product_id, 0)
        first: _Outcome | None = turn.outcome if turn.kind is Kind.SERVED else None
        if turn.kind is Kind.LEAD and not alone:
            riders = gate.take_riders(product_id, RIDERS)
            if riders:
                first = await _add_with_riders(db, args, riders)
        try:
            result = await _add_or_reclaim(db, args, until, first)
        except InsufficientStock as refused:
            # No units and no expired hold to reclaim: the answer for the whole queue.
            if refused.available == 0:
                gate.wave_through(product_id)
            raise
    written()
    note_reserved(product_id, result["reservations"], result["available"])
    lines = [
        _line(
            line["product_id"],
            line["title"],
            Decimal(line["price"]),
            line["quantity"],
            until if line["held"] else None,
            line["available"],
        )
        for line in result["lines"]
    ]
    return _view(lines), token if result["created"] else None


async def _add_with_riders(db: Sql, args: tuple[Any, ...], riders: list[Rider]) -> _Outcome:
    """Add to the carts of this buyer and of the riders in one call; serve each rider its
    outcome and return this buyer's."""
    every = [args, *(rider.payload for rider in riders)]
    with shared_failure(riders):
        rows = await db.fetch(
            ADD_ITEMS_SQL,
            *([a[i] for a in every] for i in (0, 1, 2)),
            args[3],
            *([a[i] for a in every] for i in (4, 5)),
            args[6],
            *([a[i] for a in every] for i in (7, 8)),
        )
    outcomes = [_outcome(row) for row in rows]
    for rider, outcome in zip(riders, outcomes[1:], strict=True):
        rider.serve(outcome)
    return outcomes[0]


def _outcome(row: asyncpg.Record) -> _Outcome:
    if row["code"] is None:
        result: dict[str, Any] = row["result"]
        return result
    # The error this buyer's own call would have raised.
    fields = {"S": "ERROR", "C": row["code"], "M": row["message"]}
    fields |= {k: row[name] for k, name in (("D", "detail"), ("H", "hint")) if row[name]}
    error: Exception = asyncpg.PostgresError.new(fields)
    return error


async def _add_or_reclaim(
    db: Sql, args: tuple[Any, ...], until: datetime, first: _Outcome | None = None
) -> dict[str, Any]:
    """Add to the cart (or take ``first``, the outcome of a call made for this buyer), and
    on a refusal that expired holds could lift, release them and try once more."""
    product_id: int = args[3]
    try:
        if first is None:
            return await _add(db, args)
        if isinstance(first, Exception):
            raise first
        return first
    except asyncpg.RaiseError as exc:
        if exc.message != "insufficient_stock" or exc.hint != "reclaimable":
            raise _refusal(exc, product_id) from None
        # Expired holds never block a buyer: release them and try once more, in one
        # transaction, so that a refusal leaves even the expired holds as they were.
        try:
            async with db.atomic():
                # The refusal rolled back the touch of this cart's own holds: give it
                # again first, so that only other carts' lapsed holds are reclaimed.
                await db.execute(_SLIDE, args[0], args[1], until)
                if not await release_expired(db, product_id=product_id):
                    raise exc
                return await _add(db, args)
        except asyncpg.RaiseError as again:
            raise _refusal(again, product_id) from None


async def _add(db: Sql, args: tuple[Any, ...]) -> dict[str, Any]:
    # Inside a caller's transaction a refusal must not abort it: use a savepoint.
    if db.in_transaction:
        async with db.atomic():
            result: dict[str, Any] = await db.fetchval(ADD_ITEM_SQL, *args)
    else:
        result = await db.fetchval(ADD_ITEM_SQL, *args)
    return result


def _refusal(exc: asyncpg.RaiseError, product_id: int) -> Exception:
    match exc.message:
        case "product_not_found":
            return ProductNotFound(f"product {product_id} does not exist")
        case "quantity_limit_exceeded":
            return QuantityLimitExceeded(
                f"a cart line holds at most {schemas.MAX_LINE_QUANTITY} units",
                max_quantity=schemas.MAX_LINE_QUANTITY,
            )
        case "insufficient_stock":
            return refuse(product_id, int(exc.detail or 0))
    return exc


async def update_item(
    session: AsyncSession, owner: CartOwner, product_id: int, quantity: int, *, ttl: timedelta
) -> schemas.CartView:
    """Set a line's quantity: reserve the difference, or release the newest holds first."""
    cart = await _find(session, owner)
    if cart is None:
        raise CartItemNotFound(f"product {product_id} is not in the cart")
    repo = CartRepository.from_session(session)
    until = _until(ttl)
    await repo.slide(cart.id, until)
    current = await repo.line_quantity(cart.id, product_id)
    if current is None:
        raise CartItemNotFound(f"product {product_id} is not in the cart")
    _check_limit(quantity)
    if quantity > current:
        await _require_active_product(session, product_id)
        try:
            await reserve(
                session,
                cart_id=cart.id,
                product_id=product_id,
                quantity=quantity - current,
                until=until,
                actor=owner.user,
            )
        except InsufficientStock as short:
            # A PATCH sets the quantity, so it answers the most this line can be set to:
            # the free units plus those the line already holds (an add answers free units).
            settable = short.available + current
            raise InsufficientStock(
                f"this line can be set to at most {settable} units of product {product_id}",
                available=settable,
            ) from None
    elif quantity < current:
        await release_units(
            session,
            cart_id=cart.id,
            product_id=product_id,
            quantity=current - quantity,
            actor=owner.user,
        )
    if quantity != current:
        await repo.set_line(cart.id, product_id, quantity)
    return await render(session, cart.id)


async def remove_item(session: AsyncSession, owner: CartOwner, product_id: int) -> None:
    """Remove a line and release its reservations."""
    cart = await _find(session, owner)
    repo = CartRepository.from_session(session)
    if cart is None or await repo.line_quantity(cart.id, product_id) is None:
        raise CartItemNotFound(f"product {product_id} is not in the cart")
    await release(session, await repo.reservation_ids(cart.id, product_id), actor=owner.user)
    await repo.delete_line(cart.id, product_id)


async def merge_guest_cart(session: AsyncSession, request: Request, user: User) -> None:
    """Login hook: move the guest cart's lines and reservations into the user's cart.

    Quantities of the same product are summed, up to the line limit. The reservations
    kept keep their warehouses and expiry and only change cart; guest units past the
    limit are released (newest holds first, as when a line is lowered) rather than
    refused: a login never fails because of a cart.
    """
    token = request.cookies.get(CART_COOKIE)
    if not token:
        return
    repo = CartRepository.from_session(session)
    guest = await repo.find(token_hash=hash_cart_token(token), lock=True)
    if guest is None:
        return
    target = await repo.for_user(user.id)
    # Reservations first (they are locked before stock and cart lines everywhere): once
    # locked, the expiry job cannot shrink the guest lines read below.
    await repo.lock_reservations(guest.id)
    merged: list[tuple[int, int]] = []
    for product_id, quantity in await repo.raw_lines(guest.id):
        # With the user's cart locked only the expiry job can change its line, and only
        # downwards: the room read here never lets the sum pass the limit.
        held = await repo.line_quantity(target.id, product_id) or 0
        room = max(schemas.MAX_LINE_QUANTITY - held, 0)
        if quantity > room:
            await release_units(
                session,
                cart_id=guest.id,
                product_id=product_id,
                quantity=quantity - room,
                actor=user,
            )
            quantity = room
        if quantity > 0:
            merged.append((product_id, quantity))
    await repo.move_reservations(guest.id, target.id)
    for product_id, quantity in merged:
        await repo.add_to_line(target.id, product_id, quantity)
    await repo.delete(guest.id)
    await session.flush()


async def give_back(
    session: AsyncSession, cart_id: int, units: dict[int, int], *, actor: User | None
) -> dict[int, int]:
    """Add ``units`` (per product) to the locked cart's lines, their holds already added
    to the cart by the caller (a failed payment's). A line fills up to the limit; the
    holds past it are released, newest first, as in a guest merge. Returns the units
    released per product."""
    repo = CartRepository.from_session(session)
    await session.flush()  # the caller's holds, for release_units to find
    kept: list[tuple[int, int]] = []
    released: dict[int, int] = {}
    # Holds and stock first, lines last: the lock order of every cart change.
    for product_id in sorted(units):
        quantity = units[product_id]
        # With the cart locked only the expiry job can change the line, and only downwards.
        held = await repo.line_quantity(cart_id, product_id) or 0
        room = max(schemas.MAX_LINE_QUANTITY - held, 0)
        if quantity > room:
            await release_units(
                session,
                cart_id=cart_id,
                product_id=product_id,
                quantity=quantity - room,
                actor=actor,
            )
            released[product_id], quantity = quantity - room, room
        if quantity > 0:
            kept.append((product_id, quantity))
    for product_id, quantity in kept:
        await repo.add_to_line(cart_id, product_id, quantity)
    return released
