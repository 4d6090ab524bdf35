"""Catalog data sources: the Best Buy / BigBasket readers.

Pure tests: no database, no network. Tests over the real data files in /work/shared/data
are parametrized only over the files that exist, so they never skip; the hand-written
tmp_path files (from ``sources_helpers``) run everywhere.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from emporium.catalog.sources import (
    CatalogFormat,
    CatalogRecord,
    ImportStats,
    count_records,
    read_bestbuy,
    read_bigbasket,
    read_catalog,
)
from tests.catalog.sources_helpers import (
    BESTBUY_EXPECTED,
    BESTBUY_ITEMS,
    BESTBUY_REASONS,
    BIGBASKET_CSV,
    BIGBASKET_EXPECTED,
    BIGBASKET_REASONS,
    problems,
    write_bestbuy,
    write_bigbasket,
    write_file,
)

SHARED_DATA = Path(
    os.environ.get("EMPORIUM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


# ------------------------------------------------------------------- Best Buy (tiny file)


@pytest.mark.parametrize("name", ["bestbuy.json", "bestbuy.json.gz"])
def test_read_bestbuy_maps_exact_records(tmp_path: Path, name: str) -> None:
    path = write_bestbuy(tmp_path, name)
    stats = ImportStats()
    assert list(read_bestbuy(path, stats)) == BESTBUY_EXPECTED
    assert (stats.records, stats.yielded, stats.skipped) == (10, 3, 7)
    assert dict(stats.reasons) == BESTBUY_REASONS
    assert stats.examples[0] == "item 1: missing_price"
    assert "item 4: bad_price ('abc')" in stats.examples
    assert count_records(path, "bestbuy") == 10
    assert list(read_catalog(str(path), "bestbuy")) == BESTBUY_EXPECTED


def test_read_bestbuy_accepts_api_page(tmp_path: Path) -> None:
    path = write_file(tmp_path / "page.json", json.dumps({"products": BESTBUY_ITEMS, "total": 10}))
    assert list(read_bestbuy(path)) == BESTBUY_EXPECTED


# ------------------------------------------------------------------ BigBasket (tiny file)


@pytest.mark.parametrize("name", ["bigbasket.csv", "bigbasket.csv.gz"])
def test_read_bigbasket_maps_exact_records(tmp_path: Path, name: str) -> None:
    path = write_bigbasket(tmp_path, name)
    stats = ImportStats()
    assert list(read_bigbasket(path, stats)) == BIGBASKET_EXPECTED
    assert (stats.records, stats.yielded, stats.skipped) == (11, 5, 6)
    assert dict(stats.reasons) == BIGBASKET_REASONS
    assert stats.examples[0] == "row 3: bad_price ('abc')"
    assert count_records(path, "bigbasket") == 11
    assert list(read_catalog(path, "bigbasket")) == BIGBASKET_EXPECTED


def test_read_bigbasket_tolerates_bom_and_extra_columns(tmp_path: Path) -> None:
    # The upstream file had two extra unnamed columns; spreadsheet exports add a BOM.
    text = (
        "\ufeffindex,product,category,sub_category,brand,sale_price,market_price,type,rating,,\n"
        "1,Garlic Oil - Vegetarian Capsule 500 mg,Beauty & Hygiene,Hair Care,Sri Sri Ayurveda ,"
        "220,220,Hair Oil & Serum,4.1,stray,\n"
    )
    path = write_file(tmp_path / "bom.csv", text)
    assert list(read_bigbasket(path)) == BIGBASKET_EXPECTED[:1]


def test_readers_open_the_file_lazily(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    records = read_bigbasket(missing)  # nothing opened yet
    with pytest.raises(FileNotFoundError):
        next(records)


# ------------------------------------------------------------------- shape errors


def test_unknown_format_raises_at_call(tmp_path: Path) -> None:
    path = write_bestbuy(tmp_path)
    with pytest.raises(ValueError, match="unknown catalog format 'amazon'"):
        read_catalog(path, "amazon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown catalog format"):
        count_records(path, "csv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param(
            "obj.json", b'{"name": "x", "price": 1}', "expected a JSON array", id="object"
        ),
        pytest.param(
            "cats.json",
            b'[{"id": "abcat0010000", "name": "Gift Ideas", "path": []}]',
            "does not look like Best Buy product data",
            id="category-tree",
        ),
        pytest.param(
            "broken.json", b'[{"name": "x"', "not a readable Best Buy JSON", id="truncated"
        ),
        pytest.param("fake.json.gz", b"[]", "not a readable Best Buy JSON", id="not-gzip"),
        pytest.param(
            "products.csv",
            BIGBASKET_CSV.encode(),
            "not a readable Best Buy JSON",
            id="bigbasket-csv",
        ),
    ],
)
def test_bestbuy_wrong_shape(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        list(read_bestbuy(path))
    with pytest.raises(ValueError, match=message):
        count_records(path, "bestbuy")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("empty.csv", b"", "empty file", id="empty"),
        pytest.param(
            "bestbuy.json",
            json.dumps(BESTBUY_ITEMS).encode(),
            "missing columns: index, product",
            id="bestbuy-json",
        ),
        pytest.param(
            "retail.csv",
            b"InvoiceNo,StockCode,Description\n1,2,3\n",
            "not a BigBasket product CSV",
            id="other-csv",
        ),
        pytest.param(
            "fake.csv.gz", BIGBASKET_CSV.encode(), "unreadable BigBasket CSV", id="not-gzip"
        ),
        pytest.param(
            "latin1.csv",
            b"index,product,category\n1,Caf\xe9,Beverages\n",
            "unreadable BigBasket CSV",
            id="not-utf8",
        ),
    ],
)
def test_bigbasket_wrong_shape(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        list(read_bigbasket(path))
    with pytest.raises(ValueError, match=message):
        count_records(path, "bigbasket")


def test_empty_bestbuy_array_yields_nothing(tmp_path: Path) -> None:
    path = write_file(tmp_path / "empty.json", "[]")
    stats = ImportStats()
    assert list(read_bestbuy(path, stats)) == []
    assert (stats.records, stats.yielded, stats.skipped) == (0, 0, 0)
    assert count_records(path, "bestbuy") == 0


# ------------------------------------------------- counts: tiny files always, real ones if present


def _check_real_bestbuy(records: list[CatalogRecord]) -> None:
    assert records[0] == CatalogRecord(
        external_ref="bestbuy-4984700",
        title="AT&T GoPhone - Samsung Galaxy Express 3 4G LTE with 8GB Memory Prepaid Cell Phone",
        description=records[0].description,
        brand="AT&T GoPhone",
        category_path=("Cell Phones", "Prepaid Phones", "All Prepaid Phones"),
        price=Decimal("49.99"),
        rating=None,
        review_count=21449,
        images=("https://cdn-demo.algolia.com/bestbuy-0118/4984700_sb.jpg",),
        attributes={"sku": "4984700", "popularity": "21449"},
        seller="Best Buy",
    )
    assert records[0].description.startswith("Grab your data and your minutes as you go")
    # The README's figures survive the mapping.
    assert len({r.brand for r in records}) == 263
    depths = Counter(len(r.category_path) for r in records)
    assert depths == {1: 5, 2: 573, 3: 1947, 4: 486, 5: 280}
    assert {r.category_path[0] for r in records} == {"Cell Phones"}
    assert min(r.price for r in records) == Decimal("1.00")
    assert max(r.price for r in records) == Decimal("899.99")
    assert all(r.description for r in records)
    # HTML entities such as "&#174;" are decoded.
    assert not any("&#" in r.title or "&#" in r.description for r in records)
    assert sum("®" in r.title for r in records) > 0


def _check_real_bigbasket(records: list[CatalogRecord]) -> None:
    assert records[0] == BIGBASKET_EXPECTED[0]  # row 1 of the real file, as in the README
    assert {len(r.category_path) for r in records} == {3}
    assert len({r.category_path[0] for r in records}) == 11
    assert len({r.category_path for r in records}) == 597
    assert len({r.brand for r in records if r.brand}) == 2313
    assert sum(1 for r in records if not r.brand) == 1
    # 18,929 rated rows in the README; the skipped title-less row is one of them.
    assert sum(1 for r in records if r.rating is not None) == 18928
    # Prices stay in INR, unconverted.
    assert min(r.price for r in records) == Decimal("2.45")
    assert max(r.price for r in records) == Decimal("12500.00")
    assert all(not r.brand.endswith(" ") for r in records)


@dataclass(frozen=True)
class CountCase:
    fmt: CatalogFormat
    make: Callable[[Path], Path]  # tmp_path -> file to read
    records: int
    yielded: int
    reasons: dict[str, int]
    check: Callable[[list[CatalogRecord]], None]


def _tiny(expected: list[CatalogRecord]) -> Callable[[list[CatalogRecord]], None]:
    def check(records: list[CatalogRecord]) -> None:
        assert records == expected

    return check


COUNT_CASES: dict[str, CountCase] = {
    "tiny-bestbuy-json": CountCase(
        "bestbuy", write_bestbuy, 10, 3, BESTBUY_REASONS, _tiny(BESTBUY_EXPECTED)
    ),
    "tiny-bestbuy-gz": CountCase(
        "bestbuy",
        lambda tmp: write_bestbuy(tmp, "bb.json.gz"),
        10,
        3,
        BESTBUY_REASONS,
        _tiny(BESTBUY_EXPECTED),
    ),
    "tiny-bigbasket-csv": CountCase(
        "bigbasket", write_bigbasket, 11, 5, BIGBASKET_REASONS, _tiny(BIGBASKET_EXPECTED)
    ),
    "tiny-bigbasket-gz": CountCase(
        "bigbasket",
        lambda tmp: write_bigbasket(tmp, "bb.csv.gz"),
        11,
        5,
        BIGBASKET_REASONS,
        _tiny(BIGBASKET_EXPECTED),
    ),
}
# Real files join only when present (checked once, at import), so nothing ever skips.
if (SHARED_DATA / "bestbuy_cellphones.json.gz").is_file():
    COUNT_CASES["real-bestbuy"] = CountCase(
        "bestbuy",
        lambda _: SHARED_DATA / "bestbuy_cellphones.json.gz",
        3291,
        3291,
        {},
        _check_real_bestbuy,
    )
if (SHARED_DATA / "bigbasket_products.csv.gz").is_file():
    COUNT_CASES["real-bigbasket"] = CountCase(
        "bigbasket",
        lambda _: SHARED_DATA / "bigbasket_products.csv.gz",
        27555,
        27554,
        {"missing_title": 1},  # index 14364 has an empty product name
        _check_real_bigbasket,
    )


@pytest.mark.parametrize("case_id", list(COUNT_CASES))
def test_record_counts(tmp_path: Path, case_id: str) -> None:
    case = COUNT_CASES[case_id]
    path = case.make(tmp_path)
    fmt = case.fmt
    stats = ImportStats()
    records = list(read_catalog(path, fmt, stats))
    assert count_records(path, fmt) == case.records
    assert stats.records == case.records
    assert (len(records), stats.yielded) == (case.yielded, case.yielded)
    assert stats.skipped == case.records - case.yielded
    assert dict(stats.reasons) == case.reasons
    assert [r for r in records if problems(r)] == []
    assert len({r.external_ref for r in records}) == len(records)
    case.check(records)
