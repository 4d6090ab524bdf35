"""Readers for real product catalog files (Best Buy JSON, BigBasket CSV).

Use the entry points in :mod:`emporium.catalog.sources`; this module holds the details.
Both readers open ``*.gz`` files with gzip, trim and collapse whitespace in text fields,
skip malformed records (counted in an optional :class:`ImportStats`), never yield the same
``external_ref`` twice, and raise ``ValueError`` for a file that isn't the expected shape.
Optional numeric fields that are present but unparseable make the record malformed too:
dropping a value silently would hide a broken export.
"""

from __future__ import annotations

import csv
import gzip
import html
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from emporium.catalog.sources import CatalogRecord, ImportStats

CENT = Decimal("0.01")
TENTH = Decimal("0.1")
# Fits the products.price column (NUMERIC(12, 2)); anything larger is a data error.
MAX_PRICE = Decimal("9999999999.99")
MAX_REF_LEN = 200  # products.external_ref is VARCHAR(200)
MAX_COUNT = 2**31 - 1  # products.review_count is INTEGER
UNCATEGORIZED = "Uncategorized"

_WS = re.compile(r"\s+")
# Best Buy image URLs are named after the SKU: .../bestbuy-0118/4984700_sb.jpg
_SKU_IN_IMAGE = re.compile(r"/(\d+)_[^/]*$")
# How many leading array elements must include one product-shaped object.
_SHAPE_PROBE = 100


class _Malformed(Exception):
    """A record can't be used; ``reason`` is the short code counted in ImportStats."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig tolerates a byte-order mark from spreadsheet exports; newline="" is what the
    # csv module needs for quoted fields with embedded newlines.
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


# Decoding errors that mean "wrong or damaged file" rather than a bug here.
_FILE_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError)


def _clean(value: object, *, unescape: bool = False) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int | Decimal) or isinstance(value, bool):
        raise _Malformed("bad_text", f"{type(value).__name__} where text was expected")
    text = str(value)
    if unescape:
        text = html.unescape(text)
    return _WS.sub(" ", text).strip()


def _number(value: object, reason: str) -> Decimal | None:
    """Parse a number; None when absent or blank, _Malformed when present but not finite."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _Malformed(reason, repr(value))
    try:
        # str() first: a float's shortest repr is what the file said (49.99, not 49.9899…).
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise _Malformed(reason, repr(value)) from None
    if not number.is_finite():
        raise _Malformed(reason, repr(value))
    return number


def _price(value: object, missing: str = "missing_price", bad: str = "bad_price") -> Decimal:
    number = _number(value, bad)
    if number is None:
        raise _Malformed(missing)
    if number < 0 or number > MAX_PRICE:
        raise _Malformed(bad, str(number))
    return number.quantize(CENT, rounding=ROUND_HALF_UP)


def _rating(value: object) -> Decimal | None:
    number = _number(value, "bad_rating")
    # Both sources rate on a 1–5 scale, and some copies of the BigBasket data fill missing
    # ratings with 0, so 0 means "unrated" rather than a real zero-star rating.
    if number is None or number == 0:
        return None
    if not 0 < number <= 5:
        raise _Malformed("bad_rating", str(number))
    return number.quantize(TENTH, rounding=ROUND_HALF_UP)


def _count(value: object, reason: str) -> int:
    number = _number(value, reason)
    if number is None:
        return 0
    if number < 0 or number > MAX_COUNT or number != number.to_integral_value():
        raise _Malformed(reason, str(number))
    return int(number)


def _ref(prefix: str, raw: object) -> str:
    ident = _clean(raw)
    if not ident or len(ident) + len(prefix) + 1 > MAX_REF_LEN or " " in ident:
        raise _Malformed("bad_id", repr(raw))
    return f"{prefix}-{ident}"


def _web_urls(values: list[object]) -> tuple[str, ...]:
    # Only http(s): these end up in <img src>, where other schemes could be unsafe.
    urls: dict[str, None] = {}
    for value in values:
        if isinstance(value, str):
            url = value.strip()
            if url.startswith(("https://", "http://")):
                urls.setdefault(url, None)
    return tuple(urls)


# ----------------------------------------------------------------------------- Best Buy

BESTBUY_SELLER = "Best Buy"
# Extra scalar fields kept as attributes when a Best Buy export has them (the Algolia
# records carry type/free_shipping/url; the Best Buy API uses modelNumber/color/upc).
_BESTBUY_ATTRIBUTES = ("type", "free_shipping", "url", "modelNumber", "color", "upc")


def _load_bestbuy(path: Path) -> list[Any]:
    """Load the JSON array (or a Best Buy API page, ``{"products": [...]}``) and check it."""
    try:
        with _open_text(path) as fh:
            # Decimal keeps prices exact ("49.99", not 49.990000000000002).
            data = json.load(fh, parse_float=Decimal)
    except (*_FILE_ERRORS, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable Best Buy JSON file ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("products"), list):
        data = data["products"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of Best Buy products")
    probe = data[:_SHAPE_PROBE]
    if probe and not any(
        isinstance(item, dict) and "name" in item and ("price" in item or "salePrice" in item)
        for item in probe
    ):
        raise ValueError(
            f"{path}: does not look like Best Buy product data "
            "(expected objects with 'name' and 'price')"
        )
    return data


def _bestbuy_categories(item: Mapping[str, Any]) -> tuple[str, ...]:
    # The Algolia exports have both a flat "categories" list and "hierarchicalCategories"
    # ({"lvl0": "A", "lvl1": "A > B", ...}); the deepest level is the most specific path.
    levels = item.get("hierarchicalCategories")
    if isinstance(levels, dict) and levels:
        deepest = max(
            (k for k, v in levels.items() if isinstance(v, str) and v.strip()),
            key=lambda k: int(k[3:]) if k[3:].isdigit() else -1,
            default=None,
        )
        if deepest is not None:
            parts = [_clean(p, unescape=True) for p in levels[deepest].split(" > ")]
            return tuple(p for p in parts if p) or (UNCATEGORIZED,)
    categories = item.get("categories")
    if categories is None:
        return (UNCATEGORIZED,)
    if not isinstance(categories, list):
        raise _Malformed("bad_categories", type(categories).__name__)
    parts = [_clean(c, unescape=True) for c in categories]
    return tuple(p for p in parts if p) or (UNCATEGORIZED,)


def _bestbuy_record(item: object, position: int) -> CatalogRecord:
    if not isinstance(item, dict):
        raise _Malformed("not_an_object", type(item).__name__)
    # Names and descriptions carry HTML entities such as "&#174;" (®).
    title = _clean(item.get("name"), unescape=True)
    if not title:
        raise _Malformed("missing_name")
    price = _price(item["price"] if "price" in item else item.get("salePrice"))

    image = item.get("image")
    images = item.get("images")
    sku_match = _SKU_IN_IMAGE.search(image) if isinstance(image, str) else None
    sku = item.get("sku", sku_match.group(1) if sku_match else None)
    ident = item.get("objectID", sku)
    # No id at all: fall back to the array position, stable for a given file.
    ref = _ref("bestbuy", ident) if ident is not None else f"bestbuy-row-{position}"

    rating = _rating(item.get("rating", item.get("customerReviewAverage")))
    # The Algolia data has no review counts, only a popularity score (higher is more
    # popular); review_count is what search ranks by, so popularity stands in for it.
    reviews = next(
        (item[k] for k in ("reviews", "review_count", "customerReviewCount") if k in item),
        item.get("popularity"),
    )
    attributes: dict[str, str] = {}
    if sku is not None:
        attributes["sku"] = _clean(sku)
    if "popularity" in item:
        attributes["popularity"] = str(_count(item["popularity"], "bad_popularity"))
    for key in _BESTBUY_ATTRIBUTES:
        value = item.get(key)
        if isinstance(value, bool):
            attributes[key] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal) and _clean(value):
            attributes[key] = _clean(value, unescape=True)

    return CatalogRecord(
        external_ref=ref,
        title=title,
        description=_clean(
            item.get("description", item.get("longDescription", item.get("shortDescription"))),
            unescape=True,
        ),
        brand=_clean(item.get("brand", item.get("manufacturer")), unescape=True),
        category_path=_bestbuy_categories(item),
        price=price,
        rating=rating,
        review_count=_count(reviews, "bad_review_count"),
        images=_web_urls([image, *(images if isinstance(images, list) else [])]),
        attributes=attributes,
        seller=BESTBUY_SELLER,
    )


def read_bestbuy(path: Path, stats: ImportStats | None = None) -> Iterator[CatalogRecord]:
    """Yield products from a Best Buy JSON array (the Algolia/InstantSearch export).

    Mapping: title ← ``name``; description ← ``description``; brand ← ``brand``; category
    path ← deepest ``hierarchicalCategories`` level, else the ``categories`` list; price ←
    ``price`` (USD); rating ← ``rating`` if present; review_count ← a review count if present,
    else ``popularity``; images ← ``image``; attributes ← ``sku``, ``popularity`` and
    ``type``/``free_shipping``/... when present. external_ref is ``bestbuy-<objectID or SKU>``,
    the SKU taken from the image file name when there is no id field. Records without a
    name or price are skipped. The JSON array is loaded whole; records are built lazily.
    """
    stats = stats if stats is not None else ImportStats()
    seen: set[str] = set()
    for position, item in enumerate(_load_bestbuy(path)):
        stats.records += 1
        try:
            record = _bestbuy_record(item, position)
        except _Malformed as bad:
            stats.skip(f"item {position}", bad.reason, bad.detail)
            continue
        if record.external_ref in seen:
            stats.skip(f"item {position}", "duplicate_id", record.external_ref)
            continue
        seen.add(record.external_ref)
        stats.yielded += 1
        yield record


# ---------------------------------------------------------------------------- BigBasket

BIGBASKET_SELLER = "BigBasket"
_BIGBASKET_REQUIRED = ("index", "product", "category", "sub_category", "brand", "sale_price")
_BIGBASKET_OPTIONAL = ("type", "market_price", "rating")


def _bigbasket_header(path: Path, reader: Iterator[list[str]]) -> dict[str, int]:
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file, expected a BigBasket CSV header") from None
    # Only the known columns: the source file had extra unnamed trailing columns.
    known = (*_BIGBASKET_REQUIRED, *_BIGBASKET_OPTIONAL)
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        if name.strip().lower() in known:
            columns.setdefault(name.strip().lower(), i)
    missing = [c for c in _BIGBASKET_REQUIRED if c not in columns]
    if missing:
        raise ValueError(
            f"{path}: not a BigBasket product CSV (missing columns: {', '.join(missing)})"
        )
    return columns


def _bigbasket_description(brand: str, path: tuple[str, ...]) -> str:
    # The data set has no descriptions; a factual sentence still gives full-text search the
    # brand and category words, e.g. "Pantene Shampoo in Hair Care, Beauty & Hygiene."
    if len(path) == 1:
        return f"{brand} product in {path[0]}." if brand else f"Product in {path[0]}."
    subject = f"{brand} {path[-1]}" if brand else path[-1]
    return f"{subject} in {', '.join(reversed(path[:-1]))}."


def _bigbasket_record(row: list[str], columns: Mapping[str, int]) -> CatalogRecord:
    if len(row) <= max(columns.values()):
        raise _Malformed("short_row", f"{len(row)} fields")

    def get(column: str) -> str:
        i = columns.get(column)
        return row[i] if i is not None else ""

    index = _count(get("index"), "bad_index")
    if index <= 0:
        raise _Malformed("bad_index", repr(get("index")))
    title = _clean(get("product"))
    if not title:
        raise _Malformed("missing_title")
    path = tuple(p for p in (_clean(get(c)) for c in ("category", "sub_category", "type")) if p)
    if not path:
        raise _Malformed("missing_category")
    brand = _clean(get("brand"))
    price = _price(get("sale_price"))
    attributes: dict[str, str] = {}
    if get("market_price").strip():
        market = _price(get("market_price"), bad="bad_market_price")
        attributes["market_price"] = str(market)
    return CatalogRecord(
        external_ref=_ref("bigbasket", index),
        title=title,
        description=_bigbasket_description(brand, path),
        brand=brand,
        category_path=path,
        price=price,
        rating=_rating(get("rating")),
        review_count=0,
        images=(),
        attributes=attributes,
        seller=BIGBASKET_SELLER,
    )


def read_bigbasket(path: Path, stats: ImportStats | None = None) -> Iterator[CatalogRecord]:
    """Yield products from the BigBasket product CSV, streaming row by row.

    Prices are Indian rupees (INR) and are kept as they are, not converted: price ←
    ``sale_price`` and ``attributes["market_price"]`` ← ``market_price`` (the list price).
    category_path ← (``category``, ``sub_category``, ``type``); brand is trimmed (the data has
    trailing spaces) and may be ""; rating is None when empty; review_count is 0; the
    description is built from brand and categories because the data set has none.
    Titles repeat across rows, so external_ref is ``bigbasket-<index>``. Rows with no title,
    price or category, or with a bad number, are skipped. Blank lines are not records.
    """
    stats = stats if stats is not None else ImportStats()
    seen: set[str] = set()
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            columns = _bigbasket_header(path, reader)
            row_no = 0
            for row in reader:
                if not row:
                    continue
                stats.records += 1
                row_no += 1
                # Data-row number: physical lines differ, titles can hold newlines.
                where = f"row {row_no}"
                try:
                    record = _bigbasket_record(row, columns)
                except _Malformed as bad:
                    stats.skip(where, bad.reason, bad.detail)
                    continue
                if record.external_ref in seen:
                    stats.skip(where, "duplicate_id", record.external_ref)
                    continue
                seen.add(record.external_ref)
                stats.yielded += 1
                yield record
        except (*_FILE_ERRORS, csv.Error) as exc:
            raise ValueError(
                f"{path}: unreadable BigBasket CSV near line {reader.line_num} ({exc})"
            ) from exc


def _count_bigbasket(path: Path) -> int:
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            _bigbasket_header(path, reader)
            return sum(1 for row in reader if row)
        except (*_FILE_ERRORS, csv.Error) as exc:
            raise ValueError(f"{path}: unreadable BigBasket CSV ({exc})") from exc


def count_records(path: Path, fmt: str) -> int:
    """Raw record count (skipped ones included); ``fmt`` is already validated."""
    if fmt == "bestbuy":
        return len(_load_bestbuy(path))
    return _count_bigbasket(path)
