from __future__ import annotations

from decimal import Decimal
from typing import Literal

from emporium.catalog.schemas import CategoryRef
from emporium.kit.schemas import Schema

SortOrder = Literal["relevance", "price_asc", "price_desc", "rating", "newest"]


class SearchItem(Schema):
    id: int
    title: str
    brand: str
    category: CategoryRef | None
    price: Decimal
    rating: float | None
    in_stock: bool
    highlight: str | None = None


class CategoryFacet(Schema):
    id: int
    name: str
    slug: str
    count: int


class ValueFacet(Schema):
    value: str
    count: int


class RangeFacet(Schema):
    key: str
    min: Decimal | None
    max: Decimal | None
    count: int


class StockFacet(Schema):
    value: bool
    count: int


class Facets(Schema):
    category: list[CategoryFacet]
    brand: list[ValueFacet]
    price_range: list[RangeFacet]
    rating: list[RangeFacet]
    in_stock: list[StockFacet]


class SearchResponse(Schema):
    query: str
    total: int
    page: int
    page_size: int
    corrected: bool
    backend: Literal["tantivy", "postgres"]
    took_ms: float
    items: list[SearchItem]
    facets: Facets


class Suggestion(Schema):
    text: str
    kind: Literal["product", "brand"]
    product_id: int | None


class SuggestResponse(Schema):
    query: str
    suggestions: list[Suggestion]
