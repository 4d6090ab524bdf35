"""Turning catalog rows into search documents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.kit.db import id_in
from emporium.kit.sql import Sql
from emporium.models import Category, Product
from emporium.search.engine import SearchDoc


def ancestors(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in path.strip("/").split("/") if p)


def price_to_cents(price: Decimal) -> int:
    return int((price * 100).to_integral_value())


_AVAILABLE = """
SELECT product_id, sum(quantity - reserved) AS free FROM stock
WHERE product_id = ANY($1::bigint[]) GROUP BY product_id
"""


async def available_units(unit: AsyncSession | Sql, ids: Sequence[int]) -> dict[int, int]:
    """Free units (on hand less reserved) of each of these products that has stock rows."""
    if not ids:
        return {}
    # Plain SQL: the search indexer asks this for every outbox batch with stock events.
    rows = await (await Sql.from_(unit)).fetch(_AVAILABLE, list(ids))
    return {r["product_id"]: int(r["free"] or 0) for r in rows}


def _doc(p: Product, path: str, available: int) -> SearchDoc:
    return SearchDoc(
        id=p.id,
        title=p.title,
        description=p.description,
        brand=p.brand,
        category_id=p.category_id,
        category_ancestors=ancestors(path),
        price_cents=price_to_cents(p.price),
        rating=float(p.rating) if p.rating is not None else 0.0,
        review_count=p.review_count,
        in_stock=available > 0,
        created_ts=int(p.created_at.timestamp()),
    )


async def load_docs(session: AsyncSession, ids: Iterable[int]) -> dict[int, SearchDoc]:
    """Documents for the active products among ``ids``; missing ids are absent."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(
            select(Product, Category.path)
            .join(Category, Category.id == Product.category_id)
            .where(id_in(Product.id, wanted), Product.is_active)
        )
    ).all()
    products = list(rows)
    available = await available_units(session, [p.id for p, _ in products])
    return {p.id: _doc(p, path, available.get(p.id, 0)) for p, path in products}


async def iter_all_docs(
    session: AsyncSession, batch_size: int = 2000
) -> AsyncIterator[list[SearchDoc]]:
    last_id = 0
    while True:
        rows = list(
            (
                await session.execute(
                    select(Product, Category.path)
                    .join(Category, Category.id == Product.category_id)
                    .where(Product.is_active, Product.id > last_id)
                    .order_by(Product.id)
                    .limit(batch_size)
                )
            ).all()
        )
        if not rows:
            return
        available = await available_units(session, [p.id for p, _ in rows])
        yield [_doc(p, path, available.get(p.id, 0)) for p, path in rows]
        last_id = rows[-1][0].id
        session.expunge_all()


async def count_active(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(Product).where(Product.is_active))
        or 0
    )
