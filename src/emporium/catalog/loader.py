"""Bulk loading of catalog records (demo seed and real-data imports).

Batches are upserted by ``external_ref``; each batch commits with its outbox events, so
the search index follows an import the same way it follows API writes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.accounts.sessions import SESSION_PREFIX, is_session_token
from emporium.auth.service import hash_token
from emporium.catalog.sources import CatalogRecord, StockRecord
from emporium.kit.outbox import NOTIFY_CHANNEL
from emporium.models import Category, OutboxEvent, Product, Role, Seller, Stock, User, Warehouse

BATCH_SIZE = 1000
T = TypeVar("T")


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "item"


@dataclass
class LoadStats:
    products: int = 0
    categories: int = 0
    sellers: int = 0
    stock_rows: int = 0


@dataclass
class _Lookup:
    sellers: dict[str, int] = field(default_factory=dict)
    categories: dict[tuple[str, ...], int] = field(default_factory=dict)
    category_slugs: set[str] = field(default_factory=set)
    warehouses: dict[str, int] = field(default_factory=dict)


async def _load_lookup(session: AsyncSession) -> _Lookup:
    lookup = _Lookup()
    for s in (await session.execute(select(Seller))).scalars():
        lookup.sellers[s.name] = s.id
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    for c in cats.values():
        names: list[str] = []
        for part in c.path.strip("/").split("/"):
            if part:
                names.append(cats[int(part)].name)
        lookup.categories[tuple(names)] = c.id
        lookup.category_slugs.add(c.slug)
    for w in (await session.execute(select(Warehouse))).scalars():
        lookup.warehouses[w.code] = w.id
    return lookup


async def _seller_id(session: AsyncSession, lookup: _Lookup, name: str, stats: LoadStats) -> int:
    if name not in lookup.sellers:
        slug = slugify(name)
        row = await session.scalar(
            insert(Seller)
            .values(name=name, slug=slug)
            .on_conflict_do_update(index_elements=[Seller.slug], set_={"name": name})
            .returning(Seller.id)
        )
        assert row is not None
        lookup.sellers[name] = row
        stats.sellers += 1
    return lookup.sellers[name]


async def _category_id(
    session: AsyncSession, lookup: _Lookup, path: tuple[str, ...], stats: LoadStats
) -> int:
    parent_id: int | None = None
    parent_path = "/"
    for depth in range(1, len(path) + 1):
        key = path[:depth]
        if key not in lookup.categories:
            slug = slugify(" ".join(key[-2:]) if depth > 1 else key[0])
            base, n = slug, 2
            while slug in lookup.category_slugs:
                slug, n = f"{base}-{n}", n + 1
            category = Category(parent_id=parent_id, name=key[-1], slug=slug, depth=depth - 1)
            session.add(category)
            await session.flush()
            category.path = f"{parent_path}{category.id}/"
            await session.flush()
            lookup.categories[key] = category.id
            lookup.category_slugs.add(slug)
            stats.categories += 1
        parent_id = lookup.categories[key]
        parent_path = f"{parent_path}{parent_id}/"
    assert parent_id is not None
    return parent_id


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


async def ensure_warehouses(session: AsyncSession, warehouses: Sequence[tuple[str, str]]) -> None:
    for code, name in warehouses:
        await session.execute(
            insert(Warehouse)
            .values(code=code, name=name)
            .on_conflict_do_nothing(index_elements=[Warehouse.code])
        )


async def ensure_user(
    session: AsyncSession, *, email: str, name: str, role: Role, token: str, seller_id: int | None
) -> None:
    if is_session_token(token):
        raise ValueError(f"an API token must not start with {SESSION_PREFIX!r} (login sessions do)")
    stmt = insert(User).values(
        email=email,
        name=name,
        role=role.value,
        seller_id=seller_id,
        api_token_hash=hash_token(token),
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[User.email],
            set_={
                "api_token_hash": stmt.excluded.api_token_hash,
                "role": role.value,
                "seller_id": seller_id,
            },
        )
    )


async def load_records(
    maker: async_sessionmaker[AsyncSession],
    records: Iterable[tuple[CatalogRecord, Sequence[StockRecord]]],
    on_progress: Callable[[int], None] | None = None,
) -> LoadStats:
    stats = LoadStats()
    async with maker() as session:
        lookup = await _load_lookup(session)
    for batch in _batches(records, BATCH_SIZE):
        async with maker() as session, session.begin():
            rows: list[dict[str, Any]] = []
            for rec, _ in batch:
                rows.append(
                    {
                        "external_ref": rec.external_ref,
                        "seller_id": await _seller_id(session, lookup, rec.seller, stats),
                        "category_id": await _category_id(
                            session, lookup, rec.category_path, stats
                        ),
                        "title": rec.title[:500],
                        "description": rec.description,
                        "brand": rec.brand[:200],
                        "price": rec.price,
                        "images": list(rec.images),
                        "attributes": dict(rec.attributes),
                        "rating": rec.rating,
                        "review_count": rec.review_count,
                    }
                )
            # Later duplicates of an external_ref within one batch win.
            rows = list({r["external_ref"]: r for r in rows}.values())
            stmt = insert(Product).values(rows)
            excluded = stmt.excluded
            result = await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Product.external_ref],
                    set_={
                        c: getattr(excluded, c)
                        for c in (
                            "seller_id",
                            "category_id",
                            "title",
                            "description",
                            "brand",
                            "price",
                            "images",
                            "attributes",
                            "rating",
                            "review_count",
                        )
                    }
                    | {"updated_at": func.now(), "is_active": True},
                ).returning(Product.id, Product.external_ref)
            )
            ids = {ref: pid for pid, ref in result.all()}
            stock_rows = [
                {
                    "product_id": ids[s.external_ref],
                    "warehouse_id": lookup.warehouses[s.warehouse_code],
                    "quantity": s.quantity,
                }
                for _, stock in batch
                for s in stock
                if s.external_ref in ids and s.warehouse_code in lookup.warehouses
            ]
            if stock_rows:
                st = insert(Stock).values(stock_rows)
                await session.execute(
                    st.on_conflict_do_update(
                        index_elements=[Stock.product_id, Stock.warehouse_id],
                        set_={"quantity": func.greatest(st.excluded.quantity, Stock.reserved)},
                    )
                )
            await session.execute(
                insert(OutboxEvent).values(
                    [
                        {
                            "topic": "product.updated",
                            "aggregate_type": "product",
                            "aggregate_id": str(pid),
                            "payload": {"source": "import"},
                        }
                        for pid in ids.values()
                    ]
                )
            )
            # A bulk load commits rarely and often from another process: wake the
            # dispatcher from inside the batch.
            await session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
            stats.products += len(ids)
            stats.stock_rows += len(stock_rows)
        if on_progress:
            on_progress(len(batch))
    return stats


async def catalog_is_empty(session: AsyncSession) -> bool:
    return await session.scalar(select(Product.id).limit(1)) is None
