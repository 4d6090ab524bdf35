"""Catalog use cases. Services flush, never commit: the caller owns the transaction."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.catalog import schemas
from emporium.catalog.errors import (
    CategoryNotFound,
    InvalidCursor,
    NotProductOwner,
    ProductNotFound,
    SellerNotFound,
    SellerRequired,
)
from emporium.catalog.repository import CategoryRepository, ProductRepository
from emporium.kit.outbox import record_event
from emporium.models import Category, Product, Role, Seller, User

PRICE_AUDITED_FIELDS = ("price",)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id" or not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not valid") from exc


def build_tree(categories: list[Category], counts: dict[int, int]) -> list[schemas.CategoryNode]:
    nodes = {
        c.id: schemas.CategoryNode(
            id=c.id, name=c.name, slug=c.slug, parent_id=c.parent_id, product_count=0, children=[]
        )
        for c in categories
    }
    roots: list[schemas.CategoryNode] = []
    for c in categories:
        node = nodes[c.id]
        parent = nodes.get(c.parent_id) if c.parent_id is not None else None
        (parent.children if parent else roots).append(node)
    # Counts include descendants: add each category's own count to every ancestor.
    for c in categories:
        own = counts.get(c.id, 0)
        if not own:
            continue
        for ancestor_id in (int(p) for p in c.path.strip("/").split("/") if p):
            if ancestor_id in nodes:
                nodes[ancestor_id].product_count += own
    return roots


class CatalogService:
    async def category_tree(self, session: AsyncSession) -> list[schemas.CategoryNode]:
        repo = CategoryRepository.from_session(session)
        return build_tree(list(await repo.all()), await repo.product_counts())

    async def resolve_category(self, session: AsyncSession, key: str) -> Category:
        category = await CategoryRepository.from_session(session).get_by_id_or_slug(key)
        if category is None:
            raise CategoryNotFound(f"category {key!r} does not exist")
        return category

    async def list_products(
        self, session: AsyncSession, *, category_key: str | None, cursor: str | None, limit: int
    ) -> schemas.ProductPage:
        category = await self.resolve_category(session, category_key) if category_key else None
        rows = await ProductRepository.from_session(session).page(
            category=category, after_id=decode_cursor(cursor), limit=limit + 1
        )
        items = [
            schemas.ProductSummary(
                id=p.id,
                title=p.title,
                brand=p.brand,
                category_id=p.category_id,
                price=p.price,
                currency=p.currency,
                rating=p.rating,
                review_count=p.review_count,
                image=p.images[0] if p.images else None,
                available=available,
                in_stock=available > 0,
            )
            for p, available in rows[:limit]
        ]
        next_cursor = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
        return schemas.ProductPage(items=items, next_cursor=next_cursor)

    async def get_detail(self, session: AsyncSession, product_id: int) -> schemas.Product:
        repo = ProductRepository.from_session(session)
        product = await repo.get(product_id)
        if product is None or not product.is_active:
            raise ProductNotFound(f"product {product_id} does not exist")
        return await self._detail(session, product)

    async def _detail(self, session: AsyncSession, product: Product) -> schemas.Product:
        repo = ProductRepository.from_session(session)
        category, seller = await repo.detail_refs(product)
        available = await repo.available(product.id)
        return schemas.Product(
            id=product.id,
            title=product.title,
            description=product.description,
            brand=product.brand,
            category=schemas.CategoryRef.model_validate(category),
            seller=schemas.SellerRef.model_validate(seller),
            price=product.price,
            currency=product.currency,
            images=list(product.images),
            attributes=dict(product.attributes),
            rating=product.rating,
            review_count=product.review_count,
            is_active=product.is_active,
            available=available,
            in_stock=available > 0,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )

    async def _check_category(self, session: AsyncSession, category_id: int) -> None:
        if await CategoryRepository.from_session(session).get(category_id) is None:
            raise CategoryNotFound(f"category {category_id} does not exist")

    async def create(
        self, session: AsyncSession, actor: User, data: schemas.ProductCreate
    ) -> schemas.Product:
        if actor.role == Role.seller:
            seller_id = actor.seller_id
            if data.seller_id is not None and data.seller_id != seller_id:
                raise NotProductOwner("sellers create products only for themselves")
        else:
            seller_id = data.seller_id
            if seller_id is None:
                raise SellerRequired("seller_id is required when an admin creates a product")
        assert seller_id is not None
        if await session.get(Seller, seller_id) is None:
            raise SellerNotFound(f"seller {seller_id} does not exist")
        await self._check_category(session, data.category_id)
        product = Product(
            seller_id=seller_id,
            category_id=data.category_id,
            title=data.title,
            description=data.description,
            brand=data.brand,
            price=data.price,
            images=list(data.images),
            attributes=dict(data.attributes),
        )
        session.add(product)
        await session.flush()
        await session.refresh(product)
        audit.record(
            session,
            actor=actor,
            action="product.created",
            entity_type="product",
            entity_id=product.id,
            old=None,
            new={"title": product.title, "price": product.price},
        )
        record_event(session, "product.created", "product", product.id)
        await session.flush()
        return await self._detail(session, product)

    async def _owned(self, session: AsyncSession, actor: User, product_id: int) -> Product:
        product = await ProductRepository.from_session(session).get(product_id, for_update=True)
        if product is None:
            raise ProductNotFound(f"product {product_id} does not exist")
        if actor.role != Role.admin and product.seller_id != actor.seller_id:
            raise NotProductOwner("only the product's seller or an admin may change it")
        return product

    async def update(
        self, session: AsyncSession, actor: User, product_id: int, data: schemas.ProductUpdate
    ) -> schemas.Product:
        product = await self._owned(session, actor, product_id)
        # An omitted field and an explicit null both leave the value as it is.
        changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
        if "category_id" in changes:
            await self._check_category(session, changes["category_id"])
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for key, value in changes.items():
            current = getattr(product, key)
            if current != value:
                old[key], new[key] = current, value
                setattr(product, key, value)
        if new:
            await session.flush()
            await session.refresh(product)
            audited = {k: v for k, v in old.items() if k in PRICE_AUDITED_FIELDS}
            if audited:
                audit.record(
                    session,
                    actor=actor,
                    action="product.price_changed",
                    entity_type="product",
                    entity_id=product.id,
                    old=audited,
                    new={k: new[k] for k in audited},
                )
            other = [k for k in new if k not in PRICE_AUDITED_FIELDS]
            if other:
                audit.record(
                    session,
                    actor=actor,
                    action="product.updated",
                    entity_type="product",
                    entity_id=product.id,
                    old={k: old[k] for k in other},
                    new={k: new[k] for k in other},
                )
            record_event(session, "product.updated", "product", product.id, {"fields": sorted(new)})
            await session.flush()
        return await self._detail(session, product)

    async def delete(self, session: AsyncSession, actor: User, product_id: int) -> None:
        product = await self._owned(session, actor, product_id)
        if not product.is_active:
            raise ProductNotFound(f"product {product_id} does not exist")
        audit.record(
            session,
            actor=actor,
            action="product.deleted",
            entity_type="product",
            entity_id=product.id,
            old={"title": product.title, "price": product.price},
            new=None,
        )
        # Soft delete: order history keeps pointing at the row.
        product.is_active = False
        record_event(session, "product.deleted", "product", product_id)
        await session.flush()


catalog = CatalogService()
