"""Stock levels per warehouse. Writers lock the product's stock rows, never check-then-act."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.catalog.errors import NotProductOwner, ProductNotFound
from emporium.catalog.repository import ProductRepository
from emporium.inventory import schemas
from emporium.inventory.errors import StockBelowReserved, WarehouseNotFound
from emporium.inventory.repository import StockRepository, WarehouseRepository
from emporium.kit.outbox import record_event
from emporium.models import Role, User


class InventoryService:
    async def warehouses(self, session: AsyncSession) -> list[schemas.Warehouse]:
        rows = await WarehouseRepository.from_session(session).all()
        return [schemas.Warehouse.model_validate(w) for w in rows]

    async def product_stock(self, session: AsyncSession, product_id: int) -> schemas.ProductStock:
        product = await ProductRepository.from_session(session).get(product_id)
        if product is None or not product.is_active:
            raise ProductNotFound(f"product {product_id} does not exist")
        warehouses = await WarehouseRepository.from_session(session).all()
        stock = await StockRepository.from_session(session).for_product(product_id)
        levels = []
        for w in warehouses:
            s = stock.get(w.id)
            quantity, reserved = (s.quantity, s.reserved) if s else (0, 0)
            levels.append(
                schemas.StockLevel(
                    warehouse_id=w.id,
                    warehouse_code=w.code,
                    quantity=quantity,
                    reserved=reserved,
                    available=quantity - reserved,
                )
            )
        return schemas.ProductStock(
            product_id=product_id, levels=levels, available=sum(lv.available for lv in levels)
        )

    async def set_stock(
        self, session: AsyncSession, actor: User, product_id: int, update: schemas.StockUpdate
    ) -> schemas.ProductStock:
        # The product row lock serialises stock writers for this product.
        product = await ProductRepository.from_session(session).get(product_id, for_update=True)
        if product is None or not product.is_active:
            raise ProductNotFound(f"product {product_id} does not exist")
        if actor.role != Role.admin and product.seller_id != actor.seller_id:
            raise NotProductOwner("only the product's seller or an admin may change its stock")
        known = {w.id for w in await WarehouseRepository.from_session(session).all()}
        unknown = sorted({s.warehouse_id for s in update.root} - known)
        if unknown:
            raise WarehouseNotFound(f"unknown warehouse ids: {unknown}")
        repo = StockRepository.from_session(session)
        current = await repo.for_product(product_id, lock=True)
        old: dict[str, int] = {}
        new: dict[str, int] = {}
        for item in sorted(update.root, key=lambda s: s.warehouse_id):
            row = current.get(item.warehouse_id)
            before = row.quantity if row else 0
            if row is not None and item.quantity < row.reserved:
                raise StockBelowReserved(
                    {
                        "warehouse_id": item.warehouse_id,
                        "reserved": row.reserved,
                        "requested": item.quantity,
                    }
                )
            if before != item.quantity or row is None:
                await repo.set_quantity(product_id, item.warehouse_id, item.quantity)
                old[str(item.warehouse_id)], new[str(item.warehouse_id)] = before, item.quantity
        if new:
            audit.record(
                session,
                actor=actor,
                action="stock.changed",
                entity_type="product",
                entity_id=product_id,
                old={"quantity": old},
                new={"quantity": new},
            )
            record_event(session, "stock.changed", "product", product_id, {"warehouses": new})
        await session.flush()
        session.expire_all()
        return await self.product_stock(session, product_id)


inventory = InventoryService()
