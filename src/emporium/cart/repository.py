from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from emporium.kit.repository import Repository
from emporium.kit.sql import Sql
from emporium.models import Cart, CartItem, Reservation


class LineRow(NamedTuple):
    product_id: int
    title: str
    unit_price: Decimal
    quantity: int
    reserved_until: datetime | None
    available: int


class CartRepository(Repository):
    async def find(
        self, *, user_id: int | None = None, token_hash: str | None = None, lock: bool = False
    ) -> Cart | None:
        if user_id is not None:
            stmt = select(Cart).where(Cart.user_id == user_id)
        elif token_hash is not None:
            stmt = select(Cart).where(Cart.guest_token_hash == token_hash)
        else:
            return None
        if lock:
            # The cart row lock serialises every change to one cart.
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt.execution_options(populate_existing=True))

    async def for_user(self, user_id: int) -> Cart:
        """The user's cart, created if missing; locked."""
        # ON CONFLICT: two first requests of one user at once must not fail.
        await self.session.execute(
            insert(Cart).values(user_id=user_id).on_conflict_do_nothing(index_elements=["user_id"])
        )
        cart = await self.find(user_id=user_id, lock=True)
        assert cart is not None
        return cart

    async def create_guest(self, token_hash: str) -> Cart:
        cart = Cart(guest_token_hash=token_hash)
        self.session.add(cart)
        await self.session.flush()
        return cart

    async def delete(self, cart_id: int) -> None:
        await self.session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
        await self.session.execute(
            delete(Cart).where(Cart.id == cart_id).execution_options(synchronize_session=False)
        )

    async def slide(self, cart_id: int, until: datetime) -> None:
        """Push back the expiry of all the cart's reservations (and lock them)."""
        await self.session.execute(
            update(Reservation)
            .where(Reservation.cart_id == cart_id)
            .values(reserved_until=until)
            .execution_options(synchronize_session=False)
        )

    async def line_quantity(self, cart_id: int, product_id: int) -> int | None:
        value = await self.session.scalar(
            select(CartItem.quantity).where(
                CartItem.cart_id == cart_id, CartItem.product_id == product_id
            )
        )
        return None if value is None else int(value)

    async def add_to_line(self, cart_id: int, product_id: int, quantity: int) -> None:
        stmt = insert(CartItem).values(cart_id=cart_id, product_id=product_id, quantity=quantity)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[CartItem.cart_id, CartItem.product_id],
                set_={"quantity": CartItem.quantity + stmt.excluded.quantity},
            )
        )

    async def set_line(self, cart_id: int, product_id: int, quantity: int) -> None:
        await self.session.execute(
            update(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
            .values(quantity=quantity)
            .execution_options(synchronize_session=False)
        )

    async def delete_line(self, cart_id: int, product_id: int) -> None:
        await self.session.execute(
            delete(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
            .execution_options(synchronize_session=False)
        )

    async def reservation_ids(self, cart_id: int, product_id: int | None = None) -> list[int]:
        stmt = select(Reservation.id).where(Reservation.cart_id == cart_id)
        if product_id is not None:
            stmt = stmt.where(Reservation.product_id == product_id)
        return list(await self.session.scalars(stmt.order_by(Reservation.id)))

    async def lock_reservations(self, cart_id: int) -> None:
        await self.session.execute(
            select(Reservation.id)
            .where(Reservation.cart_id == cart_id)
            .order_by(Reservation.id)
            .with_for_update()
        )

    async def move_reservations(self, from_cart_id: int, to_cart_id: int) -> None:
        await self.session.execute(
            update(Reservation)
            .where(Reservation.cart_id == from_cart_id)
            .values(cart_id=to_cart_id)
            .execution_options(synchronize_session=False)
        )

    async def raw_lines(self, cart_id: int) -> list[tuple[int, int]]:
        rows = await self.session.execute(
            select(CartItem.product_id, CartItem.quantity)
            .where(CartItem.cart_id == cart_id)
            .order_by(CartItem.product_id)
        )
        return [(int(p), int(q)) for p, q in rows.all()]

    async def lines(self, cart_id: int) -> Sequence[LineRow]:
        rows = await (await Sql.of(self.session)).fetch(_LINES, cart_id)
        return [LineRow(*row) for row in rows]


_LINES = """
SELECT ci.product_id, p.title, p.price, ci.quantity,
    (SELECT min(r.reserved_until) FROM reservations r
     WHERE r.cart_id = ci.cart_id AND r.product_id = ci.product_id) AS reserved_until,
    -- A withdrawn product can no longer be added, whatever stock it still has.
    CASE WHEN p.is_active
        THEN (SELECT coalesce(sum(s.quantity - s.reserved), 0)::int FROM stock s
              WHERE s.product_id = ci.product_id)
        ELSE 0 END AS available
FROM cart_items ci JOIN products p ON p.id = ci.product_id
WHERE ci.cart_id = $1
ORDER BY ci.added_at, ci.product_id
"""
