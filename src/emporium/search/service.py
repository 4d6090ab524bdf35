"""Search: Tantivy behind a circuit breaker, PostgreSQL full-text search as the fallback."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from decimal import Decimal

import pybreaker
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.catalog.schemas import CategoryRef
from emporium.kit.metrics import SEARCH_DURATION, SEARCH_FALLBACKS
from emporium.models import Category
from emporium.search import fallback, schemas
from emporium.search.engine import EngineResult, SearchIndex, SearchParams
from emporium.search.engine_types import PRICE_RANGES, RATING_THRESHOLDS

log = structlog.get_logger(__name__)

_WORDS = re.compile(r"\w+", re.UNICODE)
CATEGORY_TTL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    id: int
    name: str
    slug: str


class CategoryNames:
    """An in-process map of category ids to names; the tree is small and changes rarely."""

    def __init__(self) -> None:
        self._by_id: dict[int, CategoryInfo] = {}
        self._loaded_at = 0.0

    async def get(self, session: AsyncSession, ids: set[int]) -> dict[int, CategoryInfo]:
        stale = time.monotonic() - self._loaded_at > CATEGORY_TTL_SECONDS
        if stale or not ids <= self._by_id.keys():
            rows = await session.execute(select(Category.id, Category.name, Category.slug))
            self._by_id = {i: CategoryInfo(i, n, s) for i, n, s in rows.all()}
            self._loaded_at = time.monotonic()
        return {i: self._by_id[i] for i in ids if i in self._by_id}


def _cents(value: int | None) -> Decimal | None:
    return None if value is None else Decimal(value).scaleb(-2)


class SearchService:
    def __init__(
        self, index: SearchIndex, *, fail_max: int = 3, reset_seconds: float = 30.0
    ) -> None:
        self.index = index
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_seconds, name="search-index"
        )
        self.categories = CategoryNames()
        self.last_error: str | None = None

    @property
    def breaker_state(self) -> str:
        return str(self.breaker.current_state)

    async def _engine(self, params: SearchParams) -> EngineResult | None:
        try:
            return await asyncio.to_thread(self.breaker.call, self.index.search, params)
        except pybreaker.CircuitBreakerError:
            return None
        except Exception as exc:  # any index failure degrades to PostgreSQL
            self.last_error = repr(exc)
            log.warning("search.index_failed", error=repr(exc), breaker=self.breaker_state)
            return None

    async def search(
        self, session: AsyncSession, params: SearchParams, page: int
    ) -> schemas.SearchResponse:
        start = time.perf_counter()
        result = await self._engine(params)
        backend: str = "tantivy"
        if result is None:
            backend = "postgres"
            SEARCH_FALLBACKS.inc()
            # websearch_to_tsquery accepts any text (quotes, operators) without raising.
            result = await fallback.search(session, params, params.q)
        took = time.perf_counter() - start
        SEARCH_DURATION.labels(backend).observe(took)
        return await self._response(session, params, page, result, backend, took)

    async def _response(
        self,
        session: AsyncSession,
        params: SearchParams,
        page: int,
        result: EngineResult,
        backend: str,
        took: float,
    ) -> schemas.SearchResponse:
        ids = {h.category_id for h in result.hits} | {cid for cid, _ in result.facets.category}
        names = await self.categories.get(session, ids)

        def ref(cid: int) -> CategoryRef | None:
            info = names.get(cid)
            return CategoryRef(id=info.id, name=info.name, slug=info.slug) if info else None

        items = [
            schemas.SearchItem(
                id=h.id,
                title=h.title,
                brand=h.brand,
                category=ref(h.category_id),
                price=Decimal(h.price_cents).scaleb(-2),
                rating=h.rating or None,
                in_stock=h.in_stock,
                highlight=h.highlight,
            )
            for h in result.hits
        ]
        f = result.facets
        facets = schemas.Facets(
            category=[
                schemas.CategoryFacet(id=cid, name=names[cid].name, slug=names[cid].slug, count=n)
                for cid, n in f.category
                if cid in names
            ],
            brand=[schemas.ValueFacet(value=b, count=n) for b, n in f.brand],
            price_range=[
                schemas.RangeFacet(
                    key=k, min=_cents(lo), max=_cents(hi), count=f.price_range.get(k, 0)
                )
                for k, lo, hi in PRICE_RANGES
            ],
            rating=[
                schemas.RangeFacet(key=k, min=Decimal(r), max=None, count=f.rating.get(k, 0))
                for k, r in RATING_THRESHOLDS
            ],
            in_stock=[
                schemas.StockFacet(value=True, count=f.in_stock.get("true", 0)),
                schemas.StockFacet(value=False, count=f.in_stock.get("false", 0)),
            ],
        )
        return schemas.SearchResponse(
            query=params.q,
            total=result.total,
            page=page,
            page_size=params.limit,
            corrected=result.corrected,
            backend="tantivy" if backend == "tantivy" else "postgres",
            took_ms=round(took * 1000, 2),
            items=items,
            facets=facets,
        )

    async def suggest(
        self, session: AsyncSession, q: str, limit: int = 10
    ) -> schemas.SuggestResponse:
        suggestions = None
        try:
            suggestions = await asyncio.to_thread(self.breaker.call, self.index.suggest, q, limit)
        except pybreaker.CircuitBreakerError:
            pass
        except Exception as exc:
            self.last_error = repr(exc)
            log.warning("search.suggest_failed", error=repr(exc))
        if suggestions is None:
            suggestions = await fallback.suggest(session, _WORDS.findall(q.lower())[:8], limit)
        return schemas.SuggestResponse(
            query=q,
            suggestions=[
                schemas.Suggestion(text=s.text, kind=s.kind, product_id=s.product_id)
                for s in suggestions
            ],
        )
