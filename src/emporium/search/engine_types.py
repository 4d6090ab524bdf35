"""Value types of the search engine (re-exported by ``emporium.search.engine``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sort = Literal["relevance", "price_asc", "price_desc", "rating", "newest"]

# Bucket bounds in cents: [lo, hi), None means unbounded.
PRICE_RANGES: tuple[tuple[str, int | None, int | None], ...] = (
    ("<25", None, 2500),
    ("25–50", 2500, 5000),
    ("50–100", 5000, 10000),
    ("≥100", 10000, None),
)
RATING_THRESHOLDS: tuple[tuple[str, int], ...] = (("4+", 4), ("3+", 3), ("2+", 2), ("1+", 1))
FACET_SIZE = 20


class IndexUnavailable(Exception):
    """There is no usable index generation (missing, half-deleted or corrupt)."""


@dataclass(frozen=True, slots=True)
class SearchDoc:
    id: int
    title: str
    description: str
    brand: str
    category_id: int
    category_ancestors: tuple[int, ...]
    price_cents: int
    rating: float
    review_count: int
    in_stock: bool
    created_ts: int


@dataclass(frozen=True, slots=True)
class SearchParams:
    q: str = ""
    category_id: int | None = None
    brands: tuple[str, ...] = ()
    price_min_cents: int | None = None
    price_max_cents: int | None = None
    rating_min: float | None = None
    in_stock: bool | None = None
    sort: Sort = "relevance"
    offset: int = 0
    limit: int = 20


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    title: str
    brand: str
    category_id: int
    price_cents: int
    rating: float
    in_stock: bool
    highlight: str | None


@dataclass(frozen=True, slots=True)
class Facets:
    category: list[tuple[int, int]]
    brand: list[tuple[str, int]]
    price_range: dict[str, int]
    rating: dict[str, int]
    in_stock: dict[str, int]


@dataclass(frozen=True, slots=True)
class EngineResult:
    total: int
    hits: list[Hit]
    facets: Facets
    corrected: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    kind: Literal["product", "brand"]
    product_id: int | None
