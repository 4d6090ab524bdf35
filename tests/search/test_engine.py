from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emporium.search.engine import (
    EngineResult,
    IndexUnavailable,
    SearchDoc,
    SearchIndex,
    SearchParams,
    Suggestion,
)

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


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SearchIndex]:
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation(CATALOG, watermark=0)
    yield ix
    ix.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    ix = SearchIndex(tmp_path_factory.mktemp("shared") / "index")
    ix.build_generation(CATALOG, watermark=0)
    yield ix
    ix.close()


def ids(result: EngineResult) -> list[int]:
    return [h.id for h in result.hits]


def search(ix: SearchIndex, **kw: object) -> EngineResult:
    kw.setdefault("limit", 100)
    return ix.search(SearchParams(**kw))  # type: ignore[arg-type]


# -- relevance -------------------------------------------------------------------


def test_stemming_matches_plural_and_singular(shared: SearchIndex) -> None:
    assert set(ids(search(shared, q="phones"))) == {4, 6, 7}
    assert set(ids(search(shared, q="phone"))) == {4, 6, 7}
    assert search(shared, q="phones").total == 3


def test_quoted_phrase_matches_only_the_phrase(shared: SearchIndex) -> None:
    assert ids(search(shared, q='"wireless charger"')) == [7]
    assert set(ids(search(shared, q="wireless charger"))) == {7, 8}
    assert ids(search(shared, q='"charger wireless"')) == []


def test_title_match_ranks_above_description_match(shared: SearchIndex) -> None:
    result = search(shared, q="headphones")
    assert result.total == 4
    assert set(ids(result)[:3]) == {1, 2, 3}
    # Product 4 is by far the most popular but only its description matches.
    assert ids(result)[3] == 4
    assert result.corrected is False


def test_multi_word_query_needs_every_word(shared: SearchIndex) -> None:
    assert set(ids(search(shared, q="noise headphones"))) == {1, 2, 3}
    assert set(ids(search(shared, q="wireless noise"))) == {2}
    assert ids(search(shared, q="wireless mixer")) == []


def test_brand_is_searchable(shared: SearchIndex) -> None:
    assert ids(search(shared, q="belkin")) == [8]
    assert set(ids(search(shared, q="ANKER"))) == {3, 4}


def test_highlight_marks_title_matches_and_escapes_html(shared: SearchIndex) -> None:
    [hit] = search(shared, q="timer").hits
    assert hit.highlight == "Kitchen <b>Timer</b> &lt;Digital&gt; &amp; Loud"
    [hit] = search(shared, q='"wireless charger"').hits
    assert hit.highlight == "<b>Wireless</b> <b>Charger</b> Pad"
    assert {h.highlight for h in search(shared).hits} == {None}
    # A description-only match still gets the (escaped) title.
    cable = next(h for h in search(shared, q="tablets").hits)
    assert cable.highlight == "Anker USB-C Charging Cable"


def test_hit_fields(shared: SearchIndex) -> None:
    [hit] = search(shared, q="bose").hits
    assert (hit.id, hit.title, hit.brand, hit.category_id) == (
        2,
        "Bose QuietComfort 45 Headphones",
        "Bose",
        3,
    )
    assert (hit.price_cents, hit.rating, hit.in_stock) == (27900, 4.6, False)
    [hit] = search(shared, q="timer").hits
    assert (hit.brand, hit.rating) == ("", 2.5)


# -- typo tolerance ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("samsnug", [6]),
        ("iphnoe", [5]),
        ("kitchneaid", [9]),
        # Distance 2 for long words; equal scores fall back to popularity order.
        ("hedphonse", [3, 1, 2, 4]),
        ("galaxy samsnug", [6]),
    ],
)
def test_typos_are_corrected(shared: SearchIndex, q: str, expected: list[int]) -> None:
    result = search(shared, q=q)
    assert ids(result) == expected
    assert result.total == len(expected)
    assert result.corrected is True


def test_no_correction_for_exact_hits_short_words_or_hopeless_typos(shared: SearchIndex) -> None:
    assert search(shared, q="samsung").corrected is False
    assert ids(search(shared, q="samsung")) == [6]
    for q in ("sny", "zzzzzzzz", "samsnug mixer"):
        result = search(shared, q=q)
        assert (result.total, result.hits, result.corrected) == (0, [], False)


def test_correction_respects_filters(shared: SearchIndex) -> None:
    assert search(shared, q="samsnug", in_stock=False).total == 0
    assert ids(search(shared, q="hedphonse", category_id=2)) == [3, 1, 2]


# -- filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"category_id": 1}, {1, 2, 3, 4, 5, 6, 7, 8}),
        ({"category_id": 2}, {1, 2, 3}),
        ({"category_id": 6}, {9, 10, 11, 12}),
        ({"category_id": 7}, {9, 10, 11}),
        ({"category_id": 999}, set()),
        ({"brands": ("Anker",)}, {3, 4}),
        ({"brands": ("Anker", "Sony")}, {1, 3, 4}),
        ({"brands": ("anker",)}, set()),
        ({"price_min_cents": 5999, "price_max_cents": 34999}, {1, 2, 3, 10}),
        ({"price_min_cents": 44999}, {5, 6, 9}),
        ({"price_max_cents": 1499}, {4, 11}),
        ({"price_min_cents": 5000, "price_max_cents": 10}, set()),
        ({"rating_min": 4.6}, {1, 2, 5, 6, 9}),
        ({"in_stock": False}, {2, 8}),
        ({"in_stock": True}, {1, 3, 4, 5, 6, 7, 9, 10, 11, 12}),
        ({"q": "noise", "category_id": 2, "in_stock": True}, {1, 3}),
        ({"q": "charger", "brands": ("Belkin",), "price_max_cents": 3999}, {8}),
    ],
)
def test_filters(shared: SearchIndex, params: dict[str, object], expected: set[int]) -> None:
    result = search(shared, **params)
    assert set(ids(result)) == expected
    assert result.total == len(expected)
    assert sum(result.facets.in_stock.values()) == len(expected)


# -- sorting and paging -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price_asc", [4, 11, 7, 12, 8, 3, 10, 2, 1, 9, 5, 6]),
        ("price_desc", [5, 6, 9, 1, 2, 10, 3, 8, 12, 7, 11, 4]),
        ("rating", [9, 5, 1, 6, 2, 4, 3, 8, 10, 11, 12, 7]),
        ("newest", [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        ("relevance", BY_POPULARITY),
    ],
)
def test_sorts(shared: SearchIndex, sort: str, expected: list[int]) -> None:
    assert ids(search(shared, sort=sort)) == expected


def test_sort_applies_to_text_queries(shared: SearchIndex) -> None:
    assert ids(search(shared, q="headphones", sort="price_asc")) == [4, 3, 2, 1]
    assert ids(search(shared, q="headphones", sort="newest")) == [4, 3, 2, 1]
    assert ids(search(shared, q="headphones", sort="rating")) == [1, 2, 4, 3]


def test_pagination(shared: SearchIndex) -> None:
    page = search(shared, sort="price_asc", offset=3, limit=4)
    assert (ids(page), page.total) == ([12, 8, 3, 10], ALL)
    page = search(shared, sort="price_asc", offset=10, limit=5)
    assert (ids(page), page.total) == ([5, 6], ALL)
    page = search(shared, offset=50, limit=5)
    assert (ids(page), page.total) == ([], ALL)
    page = search(shared, limit=0)
    assert (ids(page), page.total) == ([], ALL)
    page = search(shared, offset=10**12, limit=10**12)
    assert (ids(page), page.total) == ([], ALL)
    assert ids(search(shared, offset=-5, limit=10**12)) == BY_POPULARITY
    pages = [i for o in (0, 5, 10) for i in ids(search(shared, offset=o, limit=5))]
    assert pages == BY_POPULARITY
    scored = [i for o in range(4) for i in ids(search(shared, q="hedphonse", offset=o, limit=1))]
    assert scored == [3, 1, 2, 4]


# -- facets ----------------------------------------------------------------------


def test_facets_over_all_matches(shared: SearchIndex) -> None:
    result = search(shared, limit=2)
    assert len(result.hits) == 2
    f = result.facets
    assert f.category == [(3, 3), (5, 3), (7, 3), (4, 2), (6, 1)]
    assert f.brand == [
        ("Anker", 2),
        ("Apple", 1),
        ("Belkin", 1),
        ("Bose", 1),
        ("Generic", 1),
        ("KitchenAid", 1),
        ("Ninja", 1),
        ("Samsung", 1),
        ("Sony", 1),
    ]
    assert list(f.price_range.items()) == [("<25", 3), ("25–50", 2), ("50–100", 2), ("≥100", 5)]
    assert list(f.rating.items()) == [("4+", 7), ("3+", 9), ("2+", 10), ("1+", 11)]
    assert f.in_stock == {"true": 10, "false": 2}


def test_facets_follow_query_and_filters(shared: SearchIndex) -> None:
    f = search(shared, q="headphones", in_stock=True).facets
    assert f.category == [(3, 2), (5, 1)]
    assert f.brand == [("Anker", 2), ("Sony", 1)]
    assert f.price_range == {"<25": 1, "25–50": 0, "50–100": 1, "≥100": 1}
    assert f.rating == {"4+": 3, "3+": 3, "2+": 3, "1+": 3}
    assert f.in_stock == {"true": 3, "false": 0}
    empty = search(shared, q="nothingmatcheshere").facets
    assert (empty.category, empty.brand) == ([], [])
    assert empty.price_range == {"<25": 0, "25–50": 0, "50–100": 0, "≥100": 0}
    assert empty.rating == {"4+": 0, "3+": 0, "2+": 0, "1+": 0}
    assert empty.in_stock == {"true": 0, "false": 0}


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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_facets_and_totals_match_brute_force(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    truth = {i: random_doc(rng, i) for i in range(1, 401)}
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation([truth[i] for i in range(1, 251)], watermark=0)
    # Several commits leave several segments, which terms aggregations must merge.
    ix.upsert([truth[i] for i in range(251, 331)])
    ix.upsert([truth[i] for i in range(331, 401)])
    changed = [random_doc(rng, i) for i in rng.sample(range(1, 401), 40)]
    ix.upsert(changed)
    truth.update((d.id, d) for d in changed)
    gone = rng.sample(range(1, 401), 25)
    ix.delete(gone)
    for i in gone:
        del truth[i]
    docs = list(truth.values())
    assert ix.doc_count() == len(docs)

    for p in BRUTE_PARAMS:
        expected = brute(docs, p)
        result = ix.search(replace(p, limit=1000))
        assert result.total == len(expected), p
        assert result.corrected is False
        assert sorted(ids(result)) == sorted(d.id for d in expected), p
        f = result.facets
        assert f.category == top(Counter(d.category_id for d in expected)), p
        assert f.brand == top(Counter(d.brand for d in expected if d.brand)), p
        assert f.price_range == {
            "<25": sum(d.price_cents < 2500 for d in expected),
            "25–50": sum(2500 <= d.price_cents < 5000 for d in expected),
            "50–100": sum(5000 <= d.price_cents < 10000 for d in expected),
            "≥100": sum(d.price_cents >= 10000 for d in expected),
        }, p
        assert f.rating == {f"{t}+": sum(d.rating >= t for d in expected) for t in (4, 3, 2, 1)}, p
        assert f.in_stock == {
            "true": sum(d.in_stock for d in expected),
            "false": sum(not d.in_stock for d in expected),
        }, p

    orders = {
        "price_asc": lambda d: (d.price_cents, d.id),
        "price_desc": lambda d: (-d.price_cents, d.id),
        "rating": lambda d: (-d.rating, -d.review_count, d.id),
        "newest": lambda d: (-d.created_ts, -d.id),
        "relevance": lambda d: (-d.review_count, -d.rating, d.id),
    }
    for sort, key in orders.items():
        p = SearchParams(category_id=1, sort=sort, offset=7, limit=60)  # type: ignore[arg-type]
        expected_ids = [d.id for d in sorted(brute(docs, p), key=key)][7:67]
        assert ids(ix.search(p)) == expected_ids, sort
    ix.close()


def test_facet_ties_beyond_the_first_terms_are_cut_by_key(tmp_path: Path) -> None:
    # 100 brands and categories, the first 10 twice: places 11-20 go to ties of one.
    docs = [
        replace(CATALOG[0], id=i + 1, brand=f"B{i % 100:03d}", category_id=500 - i % 100)
        for i in range(110)
    ]
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation(docs[:60], watermark=0)
    ix.upsert(docs[60:])
    f = search(ix).facets
    assert f.brand == [(f"B{i:03d}", 2) for i in range(10)] + [
        (f"B{i:03d}", 1) for i in range(10, 20)
    ]
    assert f.category == [(491 + i, 2) for i in range(10)] + [(401 + i, 1) for i in range(10)]
    ix.close()


# -- hostile input ------------------------------------------------------------------

NASTY = [
    'title:(foo AND "bar',
    "((((",
    'headphones"',
    "*:*",
    "a^2~3",
    "-",
    "AND OR NOT",
    "🎧 \\ / ! ? [ ] { }",
    ": ( ) [ ] { } ^ ~ * ? + - ! \\ / ' \"",
    'title:foo description:"bar baz',
    "x" * 10_000,
    "a " * 5_000,
    "\x00\u200b\ufeff",
    "ß" * 40,
    "/.*/",
    "field:[1 TO 5]",
    "IN [a b]",
    '""',
    '"""',
]


@pytest.mark.parametrize("q", NASTY)
def test_syntax_characters_never_raise(shared: SearchIndex, q: str) -> None:
    assert isinstance(shared.search(SearchParams(q=q)), EngineResult)
    assert isinstance(shared.suggest(q), list)


@pytest.mark.parametrize("q", ["((((", "*:*", "-", "🎧 !", '""', "   "])
def test_query_without_words_is_the_empty_query(shared: SearchIndex, q: str) -> None:
    result = search(shared, q=q)
    assert (result.total, ids(result), result.corrected) == (ALL, BY_POPULARITY, False)


def test_syntax_is_taken_literally(shared: SearchIndex) -> None:
    # Field prefixes are dropped; operators are plain (required) words.
    assert ids(search(shared, q="title:samsung")) == [6]
    assert ids(search(shared, q='title:"wireless charger"')) == [7]
    assert ids(search(shared, q="brand:samsung galaxy")) == [6]
    assert ids(search(shared, q='headphones"')) == ids(search(shared, q="headphones"))
    assert ids(search(shared, q="samsung OR apple")) == []
    assert ids(search(shared, q="-samsung")) == [6]


@settings(max_examples=300, deadline=None)
@given(
    q=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=":()[]{}^~*?+-!\\/'\" ANDORNOTtile:abc", max_size=80),
    )
)
def test_any_text_searches_without_error(shared: SearchIndex, q: str) -> None:
    result = shared.search(SearchParams(q=q, limit=5))
    assert 0 <= len(result.hits) <= min(5, result.total)
    assert len(shared.suggest(q, limit=3)) <= 3


# -- suggest ---------------------------------------------------------------------


def brand(text: str) -> Suggestion:
    return Suggestion(text=text, kind="brand", product_id=None)


def product(text: str, id: int) -> Suggestion:
    return Suggestion(text=text, kind="product", product_id=id)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ank", [brand("Anker"), product("Anker USB-C Charging Cable", 4), product("Anker Soundcore Life Q20 Headphones", 3)]),
        ("ANK", [brand("Anker"), product("Anker USB-C Charging Cable", 4), product("Anker Soundcore Life Q20 Headphones", 3)]),
        ("galaxy", [product("Samsung Galaxy S24", 6), product("Galaxy Projector Night Light", 12)]),
        ("galaxy s2", [product("Samsung Galaxy S24", 6)]),
        ("  Galaxy,  S2 ", [product("Samsung Galaxy S24", 6)]),
        ("wirel", [product("Charger Stand with Wireless Pad", 8), product("Wireless Charger Pad", 7)]),
        ("k", [brand("KitchenAid"), product("KitchenAid Stand Mixer", 9), product("Kitchen Timer <Digital> & Loud", 11)]),
        ("kitchenaid st", [product("KitchenAid Stand Mixer", 9)]),
        ("title:sams", [brand("Samsung"), product("Samsung Galaxy S24", 6)]),
        ("xyz", []),
        ("", []),
        ('"(*', []),
    ],
)  # fmt: skip
def test_suggest(shared: SearchIndex, prefix: str, expected: list[Suggestion]) -> None:
    assert shared.suggest(prefix) == expected


def test_suggest_limit_keeps_room_for_products(shared: SearchIndex) -> None:
    assert shared.suggest("s", limit=4) == [
        brand("Samsung"),
        brand("Sony"),
        product("Anker Soundcore Life Q20 Headphones", 3),
        product("KitchenAid Stand Mixer", 9),
    ]
    assert shared.suggest("s", limit=1) == [brand("Samsung")]
    assert shared.suggest("s", limit=0) == []
    assert shared.suggest("b", limit=4) == [
        brand("Belkin"),
        brand("Bose"),
        product("Bose QuietComfort 45 Headphones", 2),
    ]


def test_suggest_brands_fill_places_products_leave_empty(index: SearchIndex) -> None:
    index.upsert(
        [
            replace(CATALOG[9], id=50 + i, title="Kettle", brand=name)
            for i, name in enumerate(["Acme", "Acorn", "Ace", "Acme"])
        ]
    )
    assert index.suggest("ac", limit=4) == [brand("Acme"), brand("Ace"), brand("Acorn")]
    assert index.suggest("ac", limit=2) == [brand("Acme"), brand("Ace")]


def test_suggest_titles_are_distinct(index: SearchIndex) -> None:
    index.upsert([replace(CATALOG[6], id=13, review_count=50)])
    assert index.suggest("wirel") == [
        product("Wireless Charger Pad", 13),
        product("Charger Stand with Wireless Pad", 8),
    ]


# -- writing ---------------------------------------------------------------------


def test_upsert_replaces_by_id(index: SearchIndex) -> None:
    renamed = replace(CATALOG[0], title="Sony WH-1000XM6 Headphones", price_cents=39999)
    index.upsert([renamed])
    index.upsert([renamed])
    assert index.doc_count() == ALL
    assert ids(search(index, q="1000xm6")) == [1]
    # Only the typo-tolerant retry still finds it under its old model number.
    old = search(index, q="1000xm5")
    assert (ids(old), old.corrected) == ([1], True)
    [hit] = search(index, brands=("Sony",)).hits
    assert (hit.title, hit.price_cents) == ("Sony WH-1000XM6 Headphones", 39999)


def test_upsert_batch_keeps_last_version_and_adds_new(index: SearchIndex) -> None:
    first = replace(CATALOG[0], id=20, title="Draft lamp")
    last = replace(CATALOG[0], id=20, title="Final lamp")
    index.upsert([first, last, replace(CATALOG[1], id=21, title="Other lamp")])
    assert index.doc_count() == ALL + 2
    assert [h.title for h in search(index, q="lamp", sort="price_asc").hits] == [
        "Other lamp",
        "Final lamp",
    ]
    assert search(index, q="draft").total == 0


def test_delete(index: SearchIndex) -> None:
    index.delete([1, 999])
    assert index.doc_count() == ALL - 1
    assert search(index, brands=("Sony",)).total == 0
    index.delete([])
    index.upsert([])
    assert index.doc_count() == ALL - 1


def test_writes_are_seen_by_other_instances(index: SearchIndex) -> None:
    other = SearchIndex(index.root)
    assert other.doc_count() == ALL
    index.upsert([replace(CATALOG[0], id=30, title="Fresh lamp")])
    assert ids(search(other, q="lamp")) == [30]
    index.delete([30])
    assert search(other, q="lamp").total == 0
    other.close()


def test_concurrent_searches_while_writing(index: SearchIndex) -> None:
    errors: list[BaseException] = []
    totals: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                totals.append(search(index, q="lamp").total)
                index.suggest("lam")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        index.upsert([replace(CATALOG[0], id=100 + i, title=f"Lamp {i}")])
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert totals
    assert all(0 <= n <= 20 for n in totals)
    assert search(index, q="lamp").total == 20


# -- generations -------------------------------------------------------------------


def gen_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("gen-"))


def test_build_generation_switch_is_seen_by_other_instances(tmp_path: Path) -> None:
    root = tmp_path / "index"
    builder, reader = SearchIndex(root), SearchIndex(root)
    assert builder.build_generation(CATALOG, watermark=5) == "gen-1"
    assert (reader.generation(), reader.doc_count(), reader.watermark()) == ("gen-1", ALL, 5)
    assert (root / "current").is_symlink()

    new = [replace(d, title=d.title + " lamp") for d in CATALOG[:3]]
    assert builder.build_generation(new, watermark=9) == "gen-2"
    assert (reader.generation(), reader.watermark()) == ("gen-2", 9)
    assert ids(search(reader, q="lamp", sort="price_asc")) == [3, 2, 1]
    assert search(reader).total == 3

    builder.build_generation(CATALOG[:1], watermark=10)
    builder.build_generation(CATALOG[:2], watermark=11)
    # Only the live generation and the one before it are kept.
    assert gen_dirs(root) == ["gen-3", "gen-4"]
    assert search(reader).total == 2
    builder.close()
    reader.close()


def test_search_during_build_sees_the_old_generation(index: SearchIndex) -> None:
    reader = SearchIndex(index.root)
    assert search(reader).total == ALL
    seen: list[tuple[str, int, int]] = []

    def docs() -> Iterator[SearchDoc]:
        for i in range(1, 2501):
            if i in (1, 1500, 2500):
                seen.append(
                    (reader.generation(), search(reader).total, search(reader, q="lamp").total)
                )
            yield replace(CATALOG[0], id=1000 + i, title=f"Desk lamp {i}")

    progress: list[int] = []
    name = index.build_generation(docs(), watermark=3, on_progress=progress.append)
    assert seen == [("gen-1", ALL, 0)] * 3
    assert progress == [1000, 2000, 2500]
    assert (name, reader.generation()) == ("gen-2", "gen-2")
    assert search(reader).total == 2500
    assert search(reader, q="lamp").total == 2500
    reader.close()


def test_concurrent_searches_during_build_see_whole_generations(index: SearchIndex) -> None:
    reader = SearchIndex(index.root)
    totals: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                totals.append(search(reader, limit=1).total)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        index.build_generation((replace(CATALOG[0], id=i) for i in range(1, 5001)), watermark=1)
        for _ in range(50):
            if totals and totals[-1] == 5000:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(totals) <= {ALL, 5000}
    assert totals[0] == ALL
    assert totals[-1] == 5000


def test_writer_follows_a_switch_made_elsewhere(index: SearchIndex) -> None:
    other = SearchIndex(index.root)
    index.upsert([replace(CATALOG[0], id=40, title="Before lamp")])
    other.build_generation(CATALOG[:2], watermark=0)
    index.upsert([replace(CATALOG[0], id=41, title="After lamp")])
    assert index.generation() == "gen-2"
    assert ids(search(other, q="lamp")) == [41]
    assert index.doc_count() == 3
    other.close()


def test_failed_build_keeps_the_current_generation(index: SearchIndex) -> None:
    def docs() -> Iterator[SearchDoc]:
        yield CATALOG[0]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        index.build_generation(docs(), watermark=1)
    assert index.generation() == "gen-1"
    assert gen_dirs(index.root) == ["gen-1"]
    assert search(index).total == ALL
    assert index.build_generation(CATALOG[:1], watermark=2) == "gen-2"


def test_watermark_roundtrip(index: SearchIndex) -> None:
    assert index.watermark() == 0
    index.set_watermark(42)
    assert index.watermark() == 42
    assert SearchIndex(index.root).watermark() == 42
    index.set_watermark(43)
    assert index.watermark() == 43
    current = index.root / index.generation()
    assert not [p.name for p in current.iterdir() if p.name.startswith(".watermark")]
    index.build_generation([], watermark=7)
    assert index.watermark() == 7


def test_missing_index_is_unavailable(tmp_path: Path) -> None:
    ix = SearchIndex(tmp_path / "nothing")
    assert ix.exists() is False
    with pytest.raises(IndexUnavailable):
        ix.search(SearchParams(q="x"))
    with pytest.raises(IndexUnavailable):
        ix.suggest("abc")
    with pytest.raises(IndexUnavailable):
        ix.upsert(CATALOG[:1])
    with pytest.raises(IndexUnavailable):
        ix.delete([1])
    with pytest.raises(IndexUnavailable):
        ix.doc_count()
    with pytest.raises(IndexUnavailable):
        ix.generation()
    ix.ensure()
    assert ix.exists() is True
    assert (ix.generation(), ix.doc_count(), ix.watermark()) == ("gen-1", 0, 0)
    assert search(ix, q="anything").total == 0
    ix.ensure()
    assert ix.generation() == "gen-1"
    ix.upsert(CATALOG[:2])
    assert ix.doc_count() == 2
    ix.close()


def test_corrupt_generation_is_unavailable(index: SearchIndex) -> None:
    assert index.exists()
    (index.root / index.generation() / "meta.json").write_text("garbage{")
    with pytest.raises(IndexUnavailable):
        SearchIndex(index.root).search(SearchParams())
    # An instance that had it open notices too.
    with pytest.raises(IndexUnavailable):
        index.search(SearchParams())
    with pytest.raises(IndexUnavailable):
        index.upsert(CATALOG[:1])
    assert index.exists() is False
    index.build_generation(CATALOG, watermark=0)
    assert search(index).total == ALL


def test_removed_root_is_unavailable(index: SearchIndex) -> None:
    import shutil

    assert search(index).total == ALL
    shutil.rmtree(index.root)
    with pytest.raises(IndexUnavailable):
        index.search(SearchParams())
    assert index.exists() is False
