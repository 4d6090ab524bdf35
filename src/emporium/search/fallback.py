"""PostgreSQL full-text search with the same result shape as the Tantivy engine.

Used while the index is missing, corrupt or its circuit breaker is open. It ranks with
``ts_rank_cd`` over a weighted ``tsvector`` (title A, brand B, description C).
"""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.models import Category, Product, Stock
from emporium.search.engine import EngineResult, Facets, Hit, SearchParams, Suggestion
from emporium.search.engine_types import FACET_SIZE, PRICE_RANGES, RATING_THRESHOLDS

# ts_headline brackets matches with these private-use characters; the text is escaped
# before they become <b> and </b>, so markup in a seller's title stays inert.
_START, _STOP = "\ue000", "\ue001"


def _in_stock() -> ColumnElement[bool]:
    return exists(
        select(literal(1)).where(Stock.product_id == Product.id, Stock.quantity > Stock.reserved)
    )


def _price_cents() -> ColumnElement[Any]:
    return Product.price * 100


def _conditions(p: SearchParams, tsq: Any) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Product.is_active.is_(True)]
    if tsq is not None:
        conds.append(or_(func.numnode(tsq) == 0, Product.search_vector.op("@@")(tsq)))
    if p.category_id is not None:
        prefix = select(Category.path).where(Category.id == p.category_id).scalar_subquery()
        conds.append(
            Product.category_id.in_(
                select(Category.id).where(Category.path.like(prefix.concat("%")))
            )
        )
    if p.brands:
        conds.append(Product.brand.in_(p.brands))
    if p.price_min_cents is not None:
        conds.append(_price_cents() >= p.price_min_cents)
    if p.price_max_cents is not None:
        conds.append(_price_cents() <= p.price_max_cents)
    if p.rating_min is not None:
        conds.append(func.coalesce(Product.rating, 0) >= p.rating_min)
    if p.in_stock is not None:
        conds.append(_in_stock() if p.in_stock else ~_in_stock())
    return conds


def _bucket(lo: int | None, hi: int | None) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if lo is not None:
        parts.append(_price_cents() >= lo)
    if hi is not None:
        parts.append(_price_cents() < hi)
    return and_(*parts)


def _highlight(headline: str | None, title: str) -> str | None:
    """The whole title, HTML-escaped, with the matches in <b>..</b>, as the index gives it."""
    if headline is None:
        return None
    if headline.replace(_START, "").replace(_STOP, "") != title:
        return html.escape(title)  # the title holds a marker itself: show it unmarked
    return html.escape(headline).replace(_START, "<b>").replace(_STOP, "</b>")


async def search(session: AsyncSession, p: SearchParams, query_text: str) -> EngineResult:
    tsq = func.websearch_to_tsquery("english", query_text) if query_text.strip() else None
    where = and_(*_conditions(p, tsq))
    in_stock = _in_stock()
    counts = (
        await session.execute(
            select(
                func.count(),
                *[func.count().filter(_bucket(lo, hi)) for _, lo, hi in PRICE_RANGES],
                *[
                    func.count().filter(func.coalesce(Product.rating, 0) >= r)
                    for _, r in RATING_THRESHOLDS
                ],
                func.count().filter(in_stock),
            ).where(where)
        )
    ).one()
    total = int(counts[0])
    n_price = len(PRICE_RANGES)
    price_range = {k: int(counts[1 + i]) for i, (k, _, _) in enumerate(PRICE_RANGES)}
    rating = {k: int(counts[1 + n_price + i]) for i, (k, _) in enumerate(RATING_THRESHOLDS)}
    stocked = int(counts[-1])
    categories = (
        await session.execute(
            select(Product.category_id, func.count().label("n"))
            .where(where)
            .group_by(Product.category_id)
            .order_by(func.count().desc(), Product.category_id)
            .limit(FACET_SIZE)
        )
    ).all()
    brands = (
        await session.execute(
            select(Product.brand, func.count())
            .where(where, Product.brand != "")
            .group_by(Product.brand)
            .order_by(func.count().desc(), Product.brand)
            .limit(FACET_SIZE)
        )
    ).all()

    rank = func.ts_rank_cd(Product.search_vector, tsq) if tsq is not None else None
    order: list[Any]
    if p.sort == "price_asc":
        order = [Product.price.asc(), Product.id]
    elif p.sort == "price_desc":
        order = [Product.price.desc(), Product.id]
    elif p.sort == "rating":
        order = [func.coalesce(Product.rating, 0).desc(), Product.review_count.desc(), Product.id]
    elif p.sort == "newest":
        order = [Product.created_at.desc(), Product.id.desc()]
    elif rank is not None:
        order = [rank.desc(), Product.review_count.desc(), Product.id]
    else:
        order = [Product.review_count.desc(), func.coalesce(Product.rating, 0).desc(), Product.id]
    highlight: Any = (
        func.ts_headline(
            "english", Product.title, tsq, f"StartSel={_START}, StopSel={_STOP}, HighlightAll=true"
        )
        if tsq is not None
        else literal(None)
    )
    rows = (
        await session.execute(
            select(
                Product.id,
                Product.title,
                Product.brand,
                Product.category_id,
                Product.price,
                Product.rating,
                case((in_stock, True), else_=False),
                highlight,
            )
            .where(where)
            .order_by(*order)
            .offset(p.offset)
            .limit(p.limit)
        )
    ).all()
    hits = [
        Hit(
            id=r[0],
            title=r[1],
            brand=r[2],
            category_id=r[3],
            price_cents=int(r[4] * 100),
            rating=float(r[5]) if r[5] is not None else 0.0,
            in_stock=bool(r[6]),
            highlight=_highlight(r[7], r[1]),
        )
        for r in rows
    ]
    return EngineResult(
        total=total,
        hits=hits,
        facets=Facets(
            category=[(cid, int(n)) for cid, n in categories],
            brand=[(b, int(n)) for b, n in brands],
            price_range=price_range,
            rating=rating,
            in_stock={"true": stocked, "false": total - stocked},
        ),
        corrected=False,
    )


async def suggest(session: AsyncSession, words: list[str], limit: int) -> list[Suggestion]:
    if not words:
        return []
    prefix = " ".join(words)
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    brands = (
        await session.execute(
            select(Product.brand)
            .where(Product.is_active, Product.brand.ilike(escaped + "%"))
            .group_by(Product.brand)
            .order_by(func.count().desc(), Product.brand)
            .limit(limit)
        )
    ).scalars()
    out = [Suggestion(text=b, kind="brand", product_id=None) for b in brands]
    terms = " & ".join(f"{w}:*" for w in words)
    titles = (
        await session.execute(
            select(Product.id, Product.title)
            .where(
                Product.is_active,
                Product.search_vector.op("@@")(func.to_tsquery("simple", terms)),
            )
            .order_by(Product.review_count.desc(), Product.id)
            .limit(limit * 3)
        )
    ).all()
    seen: set[str] = set()
    for pid, title in titles:
        if len(out) >= limit:
            break
        if title.lower() not in seen:
            seen.add(title.lower())
            out.append(Suggestion(text=title, kind="product", product_id=pid))
    return out[:limit]
