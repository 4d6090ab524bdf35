from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select

from emporium.kit.repository import Repository
from emporium.models import Category, Product, Seller, Stock


def available_subquery() -> Select[int, int]:
    return select(
        Stock.product_id,
        func.coalesce(func.sum(Stock.quantity - Stock.reserved), 0).label("available"),
    ).group_by(Stock.product_id)


class CategoryRepository(Repository):
    async def get(self, category_id: int) -> Category | None:
        return await self.session.get(Category, category_id)

    async def get_by_id_or_slug(self, key: str) -> Category | None:
        # isdigit() alone also admits digits int() refuses, such as "²".
        if key.isascii() and key.isdigit() and len(key) < 19:
            return await self.get(int(key))
        return await self.session.scalar(select(Category).where(Category.slug == key))

    async def all(self) -> Sequence[Category]:
        return (await self.session.execute(select(Category).order_by(Category.id))).scalars().all()

    async def product_counts(self) -> dict[int, int]:
        rows = await self.session.execute(
            select(Product.category_id, func.count())
            .where(Product.is_active)
            .group_by(Product.category_id)
        )
        return {cid: n for cid, n in rows.all()}

    def descendant_ids(self, category: Category) -> Select[int]:
        return select(Category.id).where(Category.path.startswith(category.path))


class ProductRepository(Repository):
    async def get(self, product_id: int, *, for_update: bool = False) -> Product | None:
        stmt = select(Product).where(Product.id == product_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def available(self, product_id: int) -> int:
        value = await self.session.scalar(
            select(func.coalesce(func.sum(Stock.quantity - Stock.reserved), 0)).where(
                Stock.product_id == product_id
            )
        )
        return int(value or 0)

    async def detail_refs(self, product: Product) -> tuple[Category, Seller]:
        category = await self.session.get(Category, product.category_id)
        seller = await self.session.get(Seller, product.seller_id)
        assert category is not None
        assert seller is not None
        return category, seller

    async def page(
        self, *, category: Category | None, after_id: int, limit: int
    ) -> Sequence[tuple[Product, int]]:
        avail = available_subquery().subquery()
        stmt = (
            select(Product, func.coalesce(avail.c.available, 0))
            .outerjoin(avail, avail.c.product_id == Product.id)
            .where(Product.is_active, Product.id > after_id)
            .order_by(Product.id)
            .limit(limit)
        )
        if category is not None:
            stmt = stmt.where(
                Product.category_id.in_(CategoryRepository(self.session).descendant_ids(category))
            )
        return [(p, int(a)) for p, a in (await self.session.execute(stmt)).all()]
