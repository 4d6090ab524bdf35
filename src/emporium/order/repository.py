"""Statements for orders and the stock movements they cause (atomic SQL, no read-modify-write)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update

from emporium.kit.repository import Repository
from emporium.models import Order, OrderAllocation, Stock


class OrderRepository(Repository):
    async def lock(self, order_id: int) -> Order | None:
        return await self.session.scalar(
            select(Order).where(Order.id == order_id).with_for_update()
        )

    async def allocations(
        self, order_id: int, state: str | None = None
    ) -> Sequence[OrderAllocation]:
        stmt = select(OrderAllocation).where(OrderAllocation.order_id == order_id)
        if state is not None:
            stmt = stmt.where(OrderAllocation.state == state)
        # Stable order: stock rows are always touched in (product, warehouse) order.
        stmt = stmt.order_by(OrderAllocation.product_id, OrderAllocation.warehouse_id)
        return (await self.session.execute(stmt)).scalars().all()

    async def _stock(self, a: OrderAllocation, *, quantity: int, reserved: int) -> None:
        await self.session.execute(
            update(Stock)
            .where(Stock.product_id == a.product_id, Stock.warehouse_id == a.warehouse_id)
            .values(quantity=Stock.quantity + quantity, reserved=Stock.reserved + reserved)
        )

    async def take_all_held(self, order_id: int) -> list[OrderAllocation]:
        """Commit every held allocation of an order; returns them in stock-lock order."""
        rows = (
            (
                await self.session.execute(
                    update(OrderAllocation)
                    .where(OrderAllocation.order_id == order_id, OrderAllocation.state == "held")
                    .values(state="committed")
                    .returning(OrderAllocation)
                )
            )
            .scalars()
            .all()
        )
        allocations = sorted(rows, key=lambda a: (a.product_id, a.warehouse_id))
        for a in allocations:
            await self._stock(a, quantity=-a.quantity, reserved=-a.quantity)
        return allocations

    async def release_held(self, allocations: Sequence[OrderAllocation]) -> None:
        for a in allocations:
            await self._stock(a, quantity=0, reserved=-a.quantity)
            a.state = "released"

    async def restock(self, allocations: Sequence[OrderAllocation]) -> None:
        for a in allocations:
            await self._stock(a, quantity=a.quantity, reserved=0)
            a.state = "restocked"
