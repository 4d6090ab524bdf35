"""Catalog data sources: a generated demo catalog and readers for real product files.

Everything here is pure (no database): sources produce :class:`CatalogRecord` values that
``emporium.catalog.loader`` upserts. The implementations live in ``sources_demo`` and
``sources_import``; this module holds the shared record types and the public entry points,
and imports the implementations lazily so that those modules can import the types from here
without an import cycle.

Readers report what they skipped through an optional :class:`ImportStats` passed in by the
caller, because a generator's return value is lost in a plain ``for`` loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, get_args

CatalogFormat = Literal["bestbuy", "bigbasket"]
CATALOG_FORMATS: tuple[str, ...] = get_args(CatalogFormat)

DEMO_WAREHOUSES: tuple[tuple[str, str], ...] = (
    ("WH-EAST", "East Coast DC"),
    ("WH-WEST", "West Coast DC"),
    ("WH-CENT", "Central DC"),
)  # (code, name)


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    """One product as a source describes it, already cleaned and validated."""

    external_ref: str  # stable unique id within its source, e.g. "demo-000042"
    title: str
    description: str
    brand: str  # "" if unknown
    category_path: tuple[str, ...]  # root → leaf category names, at least 1 element
    price: Decimal  # quantized to 0.01, >= 0
    rating: Decimal | None  # 0.0–5.0, 1 decimal place, None if unrated
    review_count: int  # >= 0
    images: tuple[str, ...]  # URLs (may be empty)
    attributes: dict[str, str]  # free-form specs
    seller: str  # seller display name


@dataclass(frozen=True, slots=True)
class StockRecord:
    """Initial stock of one demo product in one warehouse."""

    external_ref: str
    warehouse_code: str
    quantity: int


# Only the first few skip messages are kept, so a badly broken file can't eat memory.
MAX_SKIP_EXAMPLES = 20


@dataclass
class ImportStats:
    """Counters filled in by a reader while it is iterated.

    ``records`` counts raw records read (JSON objects or CSV data rows), so after a full
    pass ``records == yielded + skipped``. ``reasons`` counts skips by a short reason code
    (for example ``"missing_price"``) and ``examples`` keeps the first few skip messages,
    each naming the record's position, for logs.
    """

    records: int = 0
    yielded: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_SKIP_EXAMPLES:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))


def generate_demo(n: int, seed: int = 42) -> Iterator[tuple[CatalogRecord, list[StockRecord]]]:
    """Yield ``n`` generated demo products with their stock in :data:`DEMO_WAREHOUSES`.

    Deterministic for a given ``seed``. Raises ``ValueError`` at once if ``n`` is negative.
    """
    from emporium.catalog import sources_demo

    return sources_demo.generate_demo(n, seed)


def read_bestbuy(path: Path | str, stats: ImportStats | None = None) -> Iterator[CatalogRecord]:
    """Stream products from a Best Buy JSON export (``.json`` or ``.json.gz``).

    See :func:`emporium.catalog.sources_import.read_bestbuy` for the field mapping.
    """
    from emporium.catalog import sources_import

    return sources_import.read_bestbuy(Path(path), stats)


def read_bigbasket(path: Path | str, stats: ImportStats | None = None) -> Iterator[CatalogRecord]:
    """Stream products from a BigBasket CSV (``.csv`` or ``.csv.gz``); prices stay in INR.

    See :func:`emporium.catalog.sources_import.read_bigbasket` for the field mapping.
    """
    from emporium.catalog import sources_import

    return sources_import.read_bigbasket(Path(path), stats)


def _check_format(fmt: str) -> None:
    if fmt not in CATALOG_FORMATS:
        raise ValueError(
            f"unknown catalog format {fmt!r}; expected one of: {', '.join(CATALOG_FORMATS)}"
        )


def read_catalog(
    path: Path | str, fmt: CatalogFormat, stats: ImportStats | None = None
) -> Iterator[CatalogRecord]:
    """Stream records from ``path`` in format ``fmt``.

    An unknown ``fmt`` raises ``ValueError`` immediately. A file that isn't the expected shape
    raises ``ValueError`` when iteration starts (the file is only opened then); malformed
    records are skipped and counted in ``stats``.
    """
    _check_format(fmt)
    if fmt == "bestbuy":
        return read_bestbuy(path, stats)
    return read_bigbasket(path, stats)


def count_records(path: Path | str, fmt: CatalogFormat) -> int:
    """Count the raw records in ``path`` (for progress bars), without building records.

    This is an upper bound on what :func:`read_catalog` yields: skipped records are included.
    Raises ``ValueError`` like :func:`read_catalog`, but eagerly.
    """
    _check_format(fmt)
    from emporium.catalog import sources_import

    return sources_import.count_records(Path(path), fmt)
