from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request

from emporium.catalog.errors import CategoryNotFound
from emporium.catalog.service import catalog as catalog_service
from emporium.kit.db import ReadSessionDep
from emporium.kit.errors import InvalidInput
from emporium.kit.schemas import CleanStr
from emporium.search import schemas
from emporium.search.engine import SearchParams
from emporium.search.service import SearchService

router = APIRouter(prefix="/search", tags=["search"])

MAX_RESULT_WINDOW = 10_000
Money = Annotated[
    Decimal, Query(ge=0, le=Decimal("9999999999.99"), max_digits=12, decimal_places=2)
]


class InvalidPriceRange(InvalidInput):
    code = "invalid_price_range"


class PageOutOfRange(InvalidInput):
    code = "page_out_of_range"


def _service(request: Request) -> SearchService:
    service: SearchService = request.app.state.search
    return service


@router.get(
    "",
    response_model=schemas.SearchResponse,
    responses={
        **CategoryNotFound.responses(),
        **InvalidPriceRange.responses(),
    },
)
async def search(
    request: Request,
    session: ReadSessionDep,
    q: Annotated[CleanStr, Query(max_length=500)] = "",
    category: Annotated[
        CleanStr | None, Query(max_length=255, description="Category id or slug")
    ] = None,
    brand: Annotated[list[CleanStr], Query(max_length=50)] = [],  # noqa: B006 - FastAPI copies defaults
    price_min: Money | None = None,
    price_max: Money | None = None,
    rating_min: Annotated[float | None, Query(ge=0, le=5)] = None,
    in_stock: bool | None = None,
    sort: schemas.SortOrder = "relevance",
    page: Annotated[int, Query(ge=1, le=MAX_RESULT_WINDOW)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.SearchResponse:
    """Full-text product search with facets over all matches."""
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidPriceRange("price_min must not exceed price_max")
    if page * page_size > MAX_RESULT_WINDOW:
        raise PageOutOfRange(f"page * page_size must not exceed {MAX_RESULT_WINDOW}")
    if any(len(b) > 200 for b in brand):
        raise InvalidInput([{"field": "brand", "message": "at most 200 characters"}])
    category_id = (
        (await catalog_service.resolve_category(session, category)).id if category else None
    )
    params = SearchParams(
        q=q,
        category_id=category_id,
        brands=tuple(b for b in brand if b),
        price_min_cents=int(price_min * 100) if price_min is not None else None,
        price_max_cents=int(price_max * 100) if price_max is not None else None,
        rating_min=rating_min,
        in_stock=in_stock,
        sort=sort,
        offset=(page - 1) * page_size,
        limit=page_size,
    )
    return await _service(request).search(session, params, page)


@router.get("/suggest", response_model=schemas.SuggestResponse)
async def suggest(
    request: Request,
    session: ReadSessionDep,
    q: Annotated[CleanStr, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=10)] = 10,
) -> schemas.SuggestResponse:
    """Prefix autocomplete over brands and product titles."""
    return await _service(request).suggest(session, q, limit)
