from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from emporium.kit.repository import Repository
from emporium.models import Stock, Warehouse


class WarehouseRepository(Repository):
    async def all(self) -> Sequence[Warehouse]:
        return (
            (await self.session.execute(select(Warehouse).order_by(Warehouse.id))).scalars().all()
        )


class StockRepository(Repository):
    async def for_product(self, product_id: int, *, lock: bool = False) -> dict[int, Stock]:
        # Locks are taken in warehouse order so concurrent writers cannot deadlock.
        stmt = select(Stock).where(Stock.product_id == product_id).order_by(Stock.warehouse_id)
        if lock:
            stmt = stmt.with_for_update()
        return {s.warehouse_id: s for s in (await self.session.execute(stmt)).scalars()}

    async def set_quantity(self, product_id: int, warehouse_id: int, quantity: int) -> None:
        stmt = insert(Stock).values(
            product_id=product_id, warehouse_id=warehouse_id, quantity=quantity, reserved=0
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Stock.product_id, Stock.warehouse_id],
                set_={"quantity": stmt.excluded.quantity, "updated_at": stmt.excluded.updated_at},
            )
        )
