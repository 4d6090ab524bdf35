"""Catalog data sources: the demo generator and the Best Buy / BigBasket readers.

Pure tests: no database, no network. Tests over the real data files in /work/shared/data
are parametrized only over the files that exist, so they never skip; the hand-written
tmp_path files run everywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from emporium.catalog.sources import (
    DEMO_WAREHOUSES,
    CatalogFormat,
    CatalogRecord,
    ImportStats,
    StockRecord,
    count_records,
    generate_demo,
    read_bestbuy,
    read_bigbasket,
    read_catalog,
)

SHARED_DATA = Path(
    os.environ.get("EMPORIUM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
CENT = Decimal("0.01")


def problems(rec: CatalogRecord) -> list[str]:
    """Everything wrong with a record, as readable strings (empty when valid)."""
    out: list[str] = []
    if not rec.external_ref or rec.external_ref != rec.external_ref.strip():
        out.append("external_ref")
    if not rec.title or rec.title != " ".join(rec.title.split()):
        out.append("title")
    if rec.brand != rec.brand.strip():
        out.append("brand")
    if not rec.seller:
        out.append("seller")
    if not isinstance(rec.category_path, tuple) or not rec.category_path:
        out.append("category_path")
    elif any(not c or c != c.strip() for c in rec.category_path):
        out.append("category_path names")
    if not isinstance(rec.price, Decimal) or rec.price < 0 or rec.price.as_tuple().exponent != -2:
        out.append(f"price {rec.price!r}")
    if rec.rating is not None and (
        not isinstance(rec.rating, Decimal)
        or rec.rating.as_tuple().exponent != -1
        or not Decimal(0) <= rec.rating <= Decimal(5)
    ):
        out.append(f"rating {rec.rating!r}")
    if not isinstance(rec.review_count, int) or rec.review_count < 0:
        out.append("review_count")
    if not isinstance(rec.images, tuple) or any(
        not isinstance(u, str) or not u.startswith(("https://", "http://")) for u in rec.images
    ):
        out.append("images")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in rec.attributes.items()):
        out.append("attributes")
    return out


# ------------------------------------------------------------------------------ demo


@pytest.fixture(scope="module")
def demo5000() -> list[tuple[CatalogRecord, list[StockRecord]]]:
    return list(generate_demo(5000))


def test_generate_demo_is_deterministic() -> None:
    first = list(generate_demo(50, seed=7))
    assert first == list(generate_demo(50, seed=7))
    assert first != list(generate_demo(50, seed=8))


def _digest_code(n: int, seed: int) -> str:
    return (
        "import hashlib; from emporium.catalog.sources import generate_demo; "
        f"print(hashlib.sha256(repr(list(generate_demo({n}, seed={seed}))).encode()).hexdigest())"
    )


def test_generate_demo_is_deterministic_across_processes() -> None:
    # A different PYTHONHASHSEED would expose any dependence on set/hash ordering.
    expected = hashlib.sha256(repr(list(generate_demo(200, seed=7))).encode()).hexdigest()
    for hash_seed in ("0", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", _digest_code(200, 7)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == expected


@pytest.mark.parametrize("n", [0, 1, 50])
def test_generate_demo_respects_n(n: int) -> None:
    items = list(generate_demo(n, seed=7))
    assert len(items) == n
    assert [rec.external_ref for rec, _ in items] == [f"demo-{i:06d}" for i in range(1, n + 1)]


def test_generate_demo_rejects_negative_n_eagerly() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_demo(-1)


def test_generate_demo_records_and_stock_are_valid() -> None:
    codes = [code for code, _ in DEMO_WAREHOUSES]
    for rec, stock in generate_demo(50, seed=7):
        assert problems(rec) == [], rec
        assert rec.rating is None or Decimal("1.0") <= rec.rating <= Decimal("5.0")
        assert rec.rating is not None or rec.review_count == 0
        assert 2 <= len(rec.category_path) <= 3
        assert 1 <= len(rec.images) <= 3
        assert rec.images == tuple(
            f"https://picsum.photos/seed/{rec.external_ref}-{i}/600/600"
            for i in range(1, len(rec.images) + 1)
        )
        assert rec.brand
        assert rec.description
        assert rec.attributes
        assert [s.warehouse_code for s in stock] == codes
        assert all(s.external_ref == rec.external_ref for s in stock)
        assert all(0 <= s.quantity <= 200 for s in stock)


def test_demo_warehouses() -> None:
    assert DEMO_WAREHOUSES == (
        ("WH-EAST", "East Coast DC"),
        ("WH-WEST", "West Coast DC"),
        ("WH-CENT", "Central DC"),
    )


def test_demo_about_ten_percent_out_of_stock(
    demo5000: list[tuple[CatalogRecord, list[StockRecord]]],
) -> None:
    out = sum(1 for _, stock in demo5000 if all(s.quantity == 0 for s in stock))
    assert 0.08 <= out / len(demo5000) <= 0.12
    # Everything else really is in stock somewhere.
    assert sum(1 for _, stock in demo5000 if any(s.quantity for s in stock)) == 5000 - out


def test_demo_price_buckets_all_populated(
    demo5000: list[tuple[CatalogRecord, list[StockRecord]]],
) -> None:
    buckets: Counter[str] = Counter()
    for rec, _ in demo5000:
        p = rec.price
        buckets["<25" if p < 25 else "25-50" if p < 50 else "50-100" if p < 100 else ">=100"] += 1
    assert set(buckets) == {"<25", "25-50", "50-100", ">=100"}
    assert min(buckets.values()) >= 250, buckets  # each at least 5%


def test_demo_catalog_shape(demo5000: list[tuple[CatalogRecord, list[StockRecord]]]) -> None:
    records = [rec for rec, _ in demo5000]
    assert all(problems(rec) == [] for rec in records)
    assert len({r.external_ref for r in records}) == 5000
    leaves = {r.category_path for r in records}
    assert len(leaves) >= 30
    assert {len(p) for p in leaves} == {2, 3}
    assert len({p[0] for p in leaves}) >= 6
    # Each leaf area has several brands, and the catalog has about 8 sellers.
    by_leaf: dict[tuple[str, ...], set[str]] = {}
    for r in records:
        by_leaf.setdefault(r.category_path, set()).add(r.brand)
    assert min(len(brands) for brands in by_leaf.values()) >= 5
    assert 6 <= len({r.seller for r in records}) <= 10
    assert len({r.title for r in records}) >= 0.8 * len(records)


def test_demo_ratings_and_reviews(demo5000: list[tuple[CatalogRecord, list[StockRecord]]]) -> None:
    records = [rec for rec, _ in demo5000]
    rated = [r.rating for r in records if r.rating is not None]
    assert 0.05 <= 1 - len(rated) / len(records) <= 0.15
    assert min(rated) >= Decimal("1.0")
    assert max(rated) <= Decimal("5.0")
    assert statistics.mean(float(r) for r in rated) >= 3.7  # skewed high
    counts = sorted(r.review_count for r in records if r.rating is not None)
    assert counts[-1] >= 20 * statistics.median(counts)  # long tail


def test_demo_descriptions_are_searchable(
    demo5000: list[tuple[CatalogRecord, list[StockRecord]]],
) -> None:
    records = [rec for rec, _ in demo5000]
    for r in records:
        sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", r.description.replace("Mr. ", "Mr "))
        assert 2 <= len(sentences) <= 3, r.description
        assert r.description.endswith(".")
    text = [f"{r.title} {r.description} {' '.join(r.category_path)}".lower() for r in records]
    for query in (
        "headphones",
        "wireless headphones",
        "noise cancelling",
        "coffee maker",
        "running shoes",
        "samsung",
        "laptop",
        "stand mixer",
        "lego",
        "yoga mat",
        "phone case",
        "bluetooth speaker",
        "smart watch",
        "blender",
        "tent",
        "novel",
        "kitchen",
    ):
        assert any(query in t for t in text), query


# ------------------------------------------------------------------- Best Buy (tiny file)

BESTBUY_ITEMS: list[object] = [
    {
        "name": " Speck - CandyShell Grip Case for Apple&#174; iPhone&#174; 6 Plus  - White ",
        "description": "Dual-layer  case.\n Protects your phone&#8217;s edges.",
        "brand": "Speck ",
        "categories": ["Cell Phones", " Cell Phone Accessories ", "iPhone Accessories", ""],
        "price": 19.99,
        "image": "https://cdn-demo.algolia.com/bestbuy-0118/8531002_sb.jpg",
        "popularity": 4524,
    },
    {"name": "No price", "price": None, "image": "https://x.test/1111111_sb.jpg"},
    {"description": "No name at all", "price": 5},
    {
        "name": "Algolia-style record",
        "objectID": "1234567",
        "hierarchicalCategories": {
            "lvl0": "Cell Phones",
            "lvl1": "Cell Phones > Unlocked Cell Phones",
            "lvl2": "",
        },
        "categories": ["Cell Phones", "Unlocked"],
        "price": "99.5",
        "rating": 4.25,
        "type": "HardGood",
        "free_shipping": True,
        "image": "javascript:alert(1)",
    },
    {"name": "Bad price", "price": "abc"},
    {"name": "Negative price", "price": -1},
    {"name": "Duplicate SKU", "price": 1, "image": "https://x.test/8531002_rb.jpg"},
    "not an object",
    {"name": "Rating out of range", "price": 5, "rating": 7, "image": "https://x.test/2_sb.jpg"},
    {"name": "No id anywhere", "price": 0, "categories": []},
]

BESTBUY_EXPECTED = [
    CatalogRecord(
        external_ref="bestbuy-8531002",
        title="Speck - CandyShell Grip Case for Apple® iPhone® 6 Plus - White",
        description="Dual-layer case. Protects your phone’s edges.",
        brand="Speck",
        category_path=("Cell Phones", "Cell Phone Accessories", "iPhone Accessories"),
        price=Decimal("19.99"),
        rating=None,
        review_count=4524,
        images=("https://cdn-demo.algolia.com/bestbuy-0118/8531002_sb.jpg",),
        attributes={"sku": "8531002", "popularity": "4524"},
        seller="Best Buy",
    ),
    CatalogRecord(
        external_ref="bestbuy-1234567",
        title="Algolia-style record",
        description="",
        brand="",
        category_path=("Cell Phones", "Unlocked Cell Phones"),
        price=Decimal("99.50"),
        rating=Decimal("4.3"),
        review_count=0,
        images=(),
        attributes={"type": "HardGood", "free_shipping": "true"},
        seller="Best Buy",
    ),
    CatalogRecord(
        external_ref="bestbuy-row-9",
        title="No id anywhere",
        description="",
        brand="",
        category_path=("Uncategorized",),
        price=Decimal("0.00"),
        rating=None,
        review_count=0,
        images=(),
        attributes={},
        seller="Best Buy",
    ),
]
BESTBUY_REASONS = {
    "missing_price": 1,
    "missing_name": 1,
    "bad_price": 2,
    "duplicate_id": 1,
    "not_an_object": 1,
    "bad_rating": 1,
}


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def write_bestbuy(tmp_path: Path, name: str = "bestbuy.json") -> Path:
    return _write(tmp_path / name, json.dumps(BESTBUY_ITEMS, ensure_ascii=False))


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
    path = _write(tmp_path / "page.json", json.dumps({"products": BESTBUY_ITEMS, "total": 10}))
    assert list(read_bestbuy(path)) == BESTBUY_EXPECTED


# ------------------------------------------------------------------ BigBasket (tiny file)

BIGBASKET_CSV = (
    "index,product,category,sub_category,brand,sale_price,market_price,type,rating\r\n"
    "1,Garlic Oil - Vegetarian Capsule 500 mg,Beauty & Hygiene,Hair Care,Sri Sri Ayurveda ,"
    "220,220,Hair Oil & Serum,4.1\r\n"
    '2,Water Bottle - Orange,"Kitchen, Garden & Pets",Storage & Accessories,Mastercook,'
    "180,180,Water & Fridge Bottles,\r\n"
    "3,Broken Price Tea,Beverages,Tea,Tetley,abc,100,Tea Bags,4.0\r\n"
    '4,"Pork - Cocktail Skinless \nSausages",Gourmet & World Food,Tinned & Processed Food,'
    "Tulip,350,350,Meats & Sausages,4\r\n"
    "5,,Beverages,Coffee,Cothas Coffee,200,240,Ground Coffee,4.2\r\n"
    "6,  Plain   Rice ,Foodgrains,Rice,,45.5,,Basmati Rice,0\r\n"
    "\r\n"
    "7,Short row,Beverages\r\n"
    "8,Green Tea,Beverages,Tea,Lipton,99.999,120,Tea Bags,3.95\r\n"
    "8,Green Tea again,Beverages,Tea,Lipton,99,120,Tea Bags,3.9\r\n"
    "9,Too Good,Beverages,Tea,Tetley,10,10,Tea Bags,6.2\r\n"
    "x,Bad Index,Beverages,Tea,Tetley,10,10,Tea Bags,\r\n"
)


def _bb(
    index: int,
    title: str,
    path: tuple[str, ...],
    brand: str,
    price: str,
    market: str | None,
    rating: str | None,
    description: str,
) -> CatalogRecord:
    return CatalogRecord(
        external_ref=f"bigbasket-{index}",
        title=title,
        description=description,
        brand=brand,
        category_path=path,
        price=Decimal(price),
        rating=Decimal(rating) if rating is not None else None,
        review_count=0,
        images=(),
        attributes={"market_price": market} if market is not None else {},
        seller="BigBasket",
    )


BIGBASKET_EXPECTED = [
    _bb(
        1,
        "Garlic Oil - Vegetarian Capsule 500 mg",
        ("Beauty & Hygiene", "Hair Care", "Hair Oil & Serum"),
        "Sri Sri Ayurveda",
        "220.00",
        "220.00",
        "4.1",
        "Sri Sri Ayurveda Hair Oil & Serum in Hair Care, Beauty & Hygiene.",
    ),
    _bb(
        2,
        "Water Bottle - Orange",
        ("Kitchen, Garden & Pets", "Storage & Accessories", "Water & Fridge Bottles"),
        "Mastercook",
        "180.00",
        "180.00",
        None,
        "Mastercook Water & Fridge Bottles in Storage & Accessories, Kitchen, Garden & Pets.",
    ),
    _bb(
        4,
        "Pork - Cocktail Skinless Sausages",
        ("Gourmet & World Food", "Tinned & Processed Food", "Meats & Sausages"),
        "Tulip",
        "350.00",
        "350.00",
        "4.0",
        "Tulip Meats & Sausages in Tinned & Processed Food, Gourmet & World Food.",
    ),
    _bb(
        6,
        "Plain Rice",
        ("Foodgrains", "Rice", "Basmati Rice"),
        "",
        "45.50",
        None,
        None,
        "Basmati Rice in Rice, Foodgrains.",
    ),
    _bb(
        8,
        "Green Tea",
        ("Beverages", "Tea", "Tea Bags"),
        "Lipton",
        "100.00",
        "120.00",
        "4.0",
        "Lipton Tea Bags in Tea, Beverages.",
    ),
]
BIGBASKET_REASONS = {
    "bad_price": 1,
    "missing_title": 1,
    "short_row": 1,
    "duplicate_id": 1,
    "bad_rating": 1,
    "bad_index": 1,
}


def write_bigbasket(tmp_path: Path, name: str = "bigbasket.csv") -> Path:
    return _write(tmp_path / name, BIGBASKET_CSV)


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
    path = _write(tmp_path / "bom.csv", text)
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
    path = _write(tmp_path / "empty.json", "[]")
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
