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

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.cart import schemas
from emporium.cart.repository import CartRepository
from emporium.catalog.errors import ProductNotFound
from emporium.catalog.repository import ProductRepository
from emporium.inventory.reservations import release, release_units, reserve, reserve_units
from emporium.kit.errors import InvalidInput, NotFound
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


# One round trip takes the cart (a user's is created on first use; the row lock
# serialises changes to one cart), slides its holds, and reads what the reservation needs:
# the product, the line's quantity, and the product's free and reclaimable stock.
_STATE = """
, slid AS (
    UPDATE reservations SET reserved_until = $3 WHERE cart_id = (SELECT id FROM c)
)
SELECT (SELECT id FROM c) AS cart_id, p.is_active,
    (SELECT quantity FROM cart_items
     WHERE cart_id = (SELECT id FROM c) AND product_id = $2) AS current,
    (SELECT coalesce(sum(quantity - reserved), 0) FROM stock WHERE product_id = $2) AS free,
    EXISTS (SELECT 1 FROM reservations
            WHERE product_id = $2 AND reserved_until < now()) AS reclaimable,
    p.title, p.price,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'product_id', ci.product_id, 'title', lp.title, 'price', lp.price::text,
            'quantity', ci.quantity,
            'held', EXISTS (SELECT 1 FROM reservations r
                            WHERE r.cart_id = ci.cart_id AND r.product_id = ci.product_id),
            'available', (SELECT coalesce(sum(s.quantity - s.reserved), 0) FROM stock s
                          WHERE s.product_id = ci.product_id)
        ) ORDER BY ci.added_at, ci.product_id), '[]'::jsonb)
     FROM cart_items ci JOIN products lp ON lp.id = ci.product_id
     WHERE ci.cart_id = (SELECT id FROM c)) AS lines
FROM products p WHERE p.id = $2
"""
_USER_STATE = (
    "WITH c AS (INSERT INTO carts (user_id) VALUES ($1) "
    "ON CONFLICT (user_id) DO UPDATE SET updated_at = now() RETURNING id)" + _STATE
)
_GUEST_STATE = "WITH c AS (SELECT $1::bigint AS id)" + _STATE


async def _guest_cart(db: Sql, owner: CartOwner) -> tuple[int, str | None]:
    """The guest's cart (locked), or a new one with the token for its cookie."""
    if owner.guest_token:
        found = await db.fetchval(
            "SELECT id FROM carts WHERE guest_token_hash = $1 FOR UPDATE",
            hash_cart_token(owner.guest_token),
        )
        if found is not None:
            return int(found), None
    # A fresh token, never the one the client sent: a client cannot choose its cart key.
    token = secrets.token_urlsafe(32)
    created = await db.fetchval(
        "INSERT INTO carts (guest_token_hash) VALUES ($1) RETURNING id", hash_cart_token(token)
    )
    return int(created), token


async def add_item(
    unit: AsyncSession | Sql, owner: CartOwner, product_id: int, quantity: int, *, ttl: timedelta
) -> tuple[schemas.CartView, str | None]:
    """Add units to a line, reserving them; returns the cart and a new guest token if any."""
    db = await Sql.from_(unit)
    until = _until(ttl)
    token: str | None = None
    if owner.user is not None:
        query, key = _USER_STATE, owner.user.id
    else:
        key, token = await _guest_cart(db, owner)
        query = _GUEST_STATE
    state = await db.fetchrow(query, key, product_id, until)
    if state is None or not state["is_active"]:
        raise ProductNotFound(f"product {product_id} does not exist")
    _check_limit((state["current"] or 0) + quantity)
    _, free_after = await reserve_units(
        db,
        cart_id=state["cart_id"],
        product_id=product_id,
        quantity=quantity,
        until=until,
        actor=owner.user,
        checked=(int(state["free"]), bool(state["reclaimable"])),
        add_to_line=True,
    )
    # The cart as it now is, from what the state read and the reservation returned: the
    # reservation is then the transaction's last statement, so the product's stock rows
    # stay locked only until the commit.
    lines = [
        _line(
            line["product_id"],
            line["title"],
            Decimal(line["price"]),
            line["quantity"],
            until if line["held"] else None,
            line["available"],
        )
        for line in state["lines"]
    ]
    for i, line in enumerate(lines):
        if line.product_id == product_id:
            lines[i] = _line(
                product_id, line.title, line.unit_price, line.quantity + quantity, until, free_after
            )
            break
    else:
        lines.append(_line(product_id, state["title"], state["price"], quantity, until, free_after))
    return _view(lines), token


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
        await reserve(
            session,
            cart_id=cart.id,
            product_id=product_id,
            quantity=quantity - current,
            until=until,
            actor=owner.user,
        )
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

    Quantities of the same product are summed; reservations keep their warehouses and
    expiry and only change cart, so no stock moves.
    """
    token = request.cookies.get(CART_COOKIE)
    if not token:
        return
    repo = CartRepository.from_session(session)
    guest = await repo.find(token_hash=hash_cart_token(token), lock=True)
    if guest is None:
        return
    target = await repo.for_user(user.id)
    # Reservations first (they are locked before cart lines everywhere), then the lines.
    await repo.move_reservations(guest.id, target.id)
    for product_id, quantity in await repo.raw_lines(guest.id):
        await repo.add_to_line(target.id, product_id, quantity)
    await repo.delete(guest.id)
    await session.flush()
