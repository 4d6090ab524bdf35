"""Catalog data sources: the demo generator.

Pure tests: no database, no network.
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from emporium.catalog.sources import DEMO_WAREHOUSES, CatalogRecord, StockRecord, generate_demo
from tests.catalog.sources_helpers import problems

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
