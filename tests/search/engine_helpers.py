"""Shared fixtures and helpers for the search-engine tests.

Not a conftest: ``test_engine_query`` and ``test_engine_index`` import what they use. The
fixtures are defined as ``index_fixture`` / ``shared_fixture`` and registered under the names
``index`` / ``shared``, so a test module gets them by importing the function (and tests ask
for ``index`` / ``shared`` as before, without shadowing an imported name).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emporium.search.engine import EngineResult, SearchDoc, SearchIndex, SearchParams

T0 = 1_700_000_000


def doc(
    id: int,
    title: str,
    description: str,
    brand: str,
    category_id: int,
    ancestors: tuple[int, ...],
    price_cents: int,
    rating: float,
    review_count: int,
    in_stock: bool,
    created: int,
) -> SearchDoc:
    return SearchDoc(
        id=id,
        title=title,
        description=description,
        brand=brand,
        category_id=category_id,
        category_ancestors=ancestors,
        price_cents=price_cents,
        rating=rating,
        review_count=review_count,
        in_stock=in_stock,
        created_ts=T0 + created,
    )


# Categories: 1 electronics > 2 audio > 3 headphones; 1 > 4 phones; 1 > 5 accessories;
# 6 home > 7 kitchen.
CATALOG = [
    doc(1, "Sony WH-1000XM5 Noise Cancelling Headphones", "Industry leading noise cancelling over-ear headphones", "Sony", 3, (1, 2, 3), 34999, 4.7, 1200, True, 100),
    doc(2, "Bose QuietComfort 45 Headphones", "Wireless noise cancelling headphones", "Bose", 3, (1, 2, 3), 27900, 4.6, 800, False, 200),
    doc(3, "Anker Soundcore Life Q20 Headphones", "Hybrid active noise cancelling headphones", "Anker", 3, (1, 2, 3), 5999, 4.4, 3000, True, 300),
    doc(4, "Anker USB-C Charging Cable", "Braided cable for phones, tablets and headphones", "Anker", 5, (1, 5), 1299, 4.5, 9000, True, 400),
    doc(5, "Apple iPhone 15", "The latest iPhone with a great camera", "Apple", 4, (1, 4), 79900, 4.8, 2500, True, 500),
    doc(6, "Samsung Galaxy S24", "Android phone with a bright display", "Samsung", 4, (1, 4), 79900, 4.6, 2500, True, 600),
    doc(7, "Wireless Charger Pad", "Fast charger for phones; keeps your desk tidy", "", 5, (1, 5), 2499, 0.0, 0, True, 700),
    doc(8, "Charger Stand with Wireless Pad", "A wireless stand that doubles as a charger", "Belkin", 5, (1, 5), 3999, 3.9, 40, False, 800),
    doc(9, "KitchenAid Stand Mixer", "Tilt-head mixer with a 5 quart bowl", "KitchenAid", 7, (6, 7), 44999, 4.8, 2600, True, 900),
    doc(10, "Ninja Coffee Maker", "Brews hot coffee fast", "Ninja", 7, (6, 7), 9999, 3.2, 150, True, 1000),
    doc(11, "Kitchen Timer <Digital> & Loud", "Magnetic timer", "", 7, (6, 7), 1499, 2.5, 12, True, 1100),
    doc(12, "Galaxy Projector Night Light", "Projects stars on the ceiling", "Generic", 6, (6,), 2999, 1.0, 12, True, 1100),
]  # fmt: skip
ALL = len(CATALOG)
BY_POPULARITY = [4, 3, 9, 5, 6, 1, 2, 10, 8, 11, 12, 7]


@pytest.fixture(name="index")
def index_fixture(tmp_path: Path) -> Iterator[SearchIndex]:
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation(CATALOG, watermark=0)
    yield ix
    ix.close()


@pytest.fixture(name="shared", scope="module")
def shared_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    ix = SearchIndex(tmp_path_factory.mktemp("shared") / "index")
    ix.build_generation(CATALOG, watermark=0)
    yield ix
    ix.close()


def ids(result: EngineResult) -> list[int]:
    return [h.id for h in result.hits]


def search(ix: SearchIndex, **kw: object) -> EngineResult:
    kw.setdefault("limit", 100)
    return ix.search(SearchParams(**kw))  # type: ignore[arg-type]


# -- brute-force reference for facets, totals and sorting --------------------------


VOCAB = ["red", "blue", "green", "lamp", "desk", "chair", "metal", "wood"]


def random_doc(rng: random.Random, id: int) -> SearchDoc:
    leaf = rng.randrange(100, 130)
    root = 1 if leaf % 2 else 2
    middle = 10 + leaf % 5
    return SearchDoc(
        id=id,
        title=" ".join(rng.sample(VOCAB, 2)),
        description=" ".join(rng.sample(VOCAB, 3)),
        brand=rng.choice([f"Brand{i:02d}" for i in range(35)] + [""] * 3),
        category_id=leaf,
        category_ancestors=(root, middle, leaf),
        price_cents=rng.choice([0, 999, 2499, 2500, 4999, 5000, 9999, 10000, rng.randrange(20000)]),
        rating=rng.choice([0.0, 0.5, 1.0, 1.9, 2.0, 3.0, 3.5, 3.9, 4.0, 4.2, 5.0]),
        review_count=rng.randrange(30),
        in_stock=rng.random() < 0.6,
        created_ts=T0 + rng.randrange(50),
    )


def brute(docs: list[SearchDoc], p: SearchParams) -> list[SearchDoc]:
    def text_match(d: SearchDoc) -> bool:
        q = p.q.strip()
        if not q:
            return True
        fields = [d.title.lower().split(), d.description.lower().split(), d.brand.lower().split()]
        if q.startswith('"'):
            pair = q.strip('"').split()
            return any(pair == f[i : i + 2] for f in fields for i in range(len(f)))
        return all(any(w in f for f in fields) for w in q.split())

    return [
        d
        for d in docs
        if text_match(d)
        and (p.category_id is None or p.category_id in d.category_ancestors)
        and (not p.brands or d.brand in p.brands)
        and (p.price_min_cents is None or d.price_cents >= p.price_min_cents)
        and (p.price_max_cents is None or d.price_cents <= p.price_max_cents)
        and (p.rating_min is None or d.rating >= p.rating_min)
        and (p.in_stock is None or d.in_stock == p.in_stock)
    ]


def top(counter: Counter[Any]) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:20]


BRUTE_PARAMS = [
    SearchParams(),
    SearchParams(q="red"),
    SearchParams(q="red lamp"),
    SearchParams(q='"blue desk"'),
    SearchParams(category_id=1),
    SearchParams(category_id=12, in_stock=True),
    SearchParams(brands=("Brand01", "Brand02", "Brand03", "Brand04")),
    SearchParams(price_min_cents=2500, price_max_cents=9999),
    SearchParams(price_min_cents=5000),
    SearchParams(rating_min=3.9),
    SearchParams(rating_min=2.0, in_stock=False),
    SearchParams(q="wood", category_id=2, price_max_cents=10000, rating_min=1.0),
    SearchParams(q="green chair", in_stock=True, sort="price_desc"),
]
